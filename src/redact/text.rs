//! Tokens shared by the detectors: letter words and ASCII digit runs with byte offsets.

use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hasher for short keys in the static dictionaries, which mixes eight
/// bytes per multiplication. The keys are fixed data, so the DoS resistance of the default
/// SipHash is not needed.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl WordHasher {
    const MULTIPLIER: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        // The multiplication leaves its best-mixed bits at the top, but the hash table picks
        // buckets with the low bits.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub(crate) type WordMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<WordHasher>>;
pub(crate) type WordSet<K> = std::collections::HashSet<K, BuildHasherDefault<WordHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Word,
    Number,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Token<'a> {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
    /// Lowercase with ё folded to е. It borrows the text itself when folding changes
    /// nothing, and the buffer passed to [`tokenize`] otherwise.
    pub folded: &'a str,
}

/// Splits `text` into words (letters, with inner hyphens or apostrophes) and digit runs.
/// Emoji, punctuation and spaces separate tokens, so "Лиле🙏" yields "Лиле".
///
/// `buffer` is cleared and receives the folded forms of words that folding changes, so
/// tokenizing costs no allocation per token.
pub(crate) fn tokenize<'a>(text: &'a str, buffer: &'a mut String) -> Vec<Token<'a>> {
    buffer.clear();
    buffer.reserve(text.len());
    let mut tokens = Vec::with_capacity(text.len() / 6 + 1);
    // Token index and byte range in `buffer` of each word folded into the buffer.
    let mut buffered: Vec<(usize, usize, usize)> = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < text.len() {
        let (c, width) = char_at(text, start);
        if is_letter(c) {
            let mut end = start + width;
            let mut changed_by_fold = !is_fold_fixed_point(c);
            while end < text.len() {
                let (next, next_width) = char_at(text, end);
                if is_letter(next) {
                    changed_by_fold |= !is_fold_fixed_point(next);
                    end += next_width;
                } else if (next == '-' || next == '\'')
                    && end + 1 < text.len()
                    && is_letter(char_at(text, end + 1).0)
                {
                    // Keep "пр-т" and "Анна-Мария" whole, but not "слово-" or "ТО-2".
                    end += 1;
                } else {
                    break;
                }
            }
            let original = &text[start..end];
            let folded = if changed_by_fold {
                let from = buffer.len();
                fold_into(buffer, original);
                buffered.push((tokens.len(), from, buffer.len()));
                ""
            } else {
                original
            };
            tokens.push(Token {
                kind: TokenKind::Word,
                start,
                end,
                folded,
            });
            start = end;
        } else if c.is_ascii_digit() {
            let mut end = start + 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Number,
                start,
                end,
                folded: &text[start..end],
            });
            start = end;
        } else {
            start += width;
        }
    }
    let buffer: &'a String = buffer;
    for (index, from, to) in buffered {
        tokens[index].folded = &buffer[from..to];
    }
    tokens
}

/// Decodes the char that starts at byte `at`, which must be a char boundary before the end
/// of `text`; returns it with its UTF-8 length. ASCII and two-byte chars (Cyrillic among
/// them) are decoded inline, which is faster than `str::char_indices` here.
fn char_at(text: &str, at: usize) -> (char, usize) {
    let bytes = text.as_bytes();
    let lead = bytes[at];
    if lead < 0x80 {
        return (char::from(lead), 1);
    }
    if lead < 0xE0 {
        // A valid `str` has a continuation byte after a two-byte lead byte.
        let code = (u32::from(lead & 0x1F) << 6) | u32::from(bytes[at + 1] & 0x3F);
        return (
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
            2,
        );
    }
    match text[at..].chars().next() {
        Some(c) => (c, c.len_utf8()),
        None => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// Checks whether [`fold`] leaves `c` as it is: lowercase ASCII and Cyrillic letters other
/// than ё, and the hyphen and apostrophe inside words.
fn is_fold_fixed_point(c: char) -> bool {
    c.is_ascii_lowercase() || c == '-' || c == '\'' || ('а'..='я').contains(&c)
}

/// `char::is_alphabetic` with fast paths for ASCII and Cyrillic, the common cases here.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else if ('\u{0410}'..='\u{044F}').contains(&c) || c == 'ё' || c == 'Ё' {
        true
    } else {
        c.is_alphabetic()
    }
}

/// Lowercases and folds ё to е, so "Семён" and "семен" compare equal.
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(&mut out, s);
    out
}

/// Appends the folded form of `s` (see [`fold`]) to `out`.
pub(crate) fn fold_into(out: &mut String, s: &str) {
    out.reserve(s.len());
    for c in s.chars() {
        match c {
            'ё' | 'Ё' => out.push('е'),
            c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            // А..Я map to а..я by a fixed offset.
            'А'..='Я' => out.push(char::from_u32(c as u32 + 0x20).unwrap_or(c)),
            'а'..='я' => out.push(c),
            c => out.extend(c.to_lowercase()),
        }
    }
}

pub(crate) fn is_capitalized(word: &str) -> bool {
    word.chars().next().is_some_and(|c| match c {
        // Fast paths for the basic Cyrillic letters, which skip the Unicode table lookup.
        'А'..='Я' | 'Ё' => true,
        'а'..='я' | 'ё' => false,
        c => c.is_uppercase(),
    })
}

pub(crate) fn is_all_caps(word: &str) -> bool {
    let mut letters = 0;
    for c in word.chars() {
        if c.is_alphabetic() {
            if !c.is_uppercase() {
                return false;
            }
            letters += 1;
        }
    }
    letters >= 2
}

pub(crate) fn is_cyrillic_word(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
}

/// Checks whether `text` may contain a decimal digit outside ASCII, which `\d` in a regex
/// matches but the hand-written digit scanners do not. It errs towards `true`: every
/// non-ASCII numeric char counts.
pub(crate) fn may_have_non_ascii_digit(text: &str) -> bool {
    // No char below U+0640 is a non-ASCII decimal digit (the first is U+0660), and every
    // char from U+0640 up starts with a UTF-8 byte of 0xD9 or more.
    text.bytes().any(|b| b >= 0xD9) && text.chars().any(|c| c >= '\u{640}' && c.is_numeric())
}

/// Returns the byte length of the char at `at` when it is a space or no-break space.
pub(crate) fn space_width(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at..) {
        Some([b' ', ..]) => Some(1),
        Some([0xC2, 0xA0, ..]) => Some(2),
        _ => None,
    }
}

pub(crate) fn is_ascii_digit_at(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(u8::is_ascii_digit)
}

/// Returns the index of the first token that starts at or after `pos`.
pub(crate) fn first_token_at(tokens: &[Token<'_>], pos: usize) -> usize {
    tokens.partition_point(|t| t.start < pos)
}

/// Returns up to `n` folded words directly before byte `pos`, nearest first. It stops at a
/// number token or a line break, so context from an earlier field or value is not used.
pub(crate) fn words_before<'a>(
    text: &str,
    tokens: &[Token<'a>],
    pos: usize,
    n: usize,
) -> Vec<&'a str> {
    let mut out = Vec::with_capacity(n);
    let mut index = first_token_at(tokens, pos);
    let mut boundary = pos;
    while index > 0 && out.len() < n {
        index -= 1;
        let token = &tokens[index];
        if token.kind == TokenKind::Number || text[token.end..boundary].contains('\n') {
            break;
        }
        out.push(token.folded);
        boundary = token.start;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_splits_emoji_and_keeps_hyphens() {
        let mut buffer = String::new();
        let tokens = tokenize("💅Маша к Лиле🙏 пр-т ТО-2", &mut buffer);
        let words: Vec<&str> = tokens.iter().map(|t| t.folded).collect();
        assert_eq!(words, vec!["маша", "к", "лиле", "пр-т", "то", "2"]);
    }

    #[test]
    fn fold_merges_yo() {
        assert_eq!(fold("Семён КОРОЛЁВА"), "семен королева");
    }

    #[test]
    fn words_before_stops_at_numbers() {
        let text = "паспорт 8016 752930 выдан 11.05";
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
        let pos = text.find("11").unwrap();
        assert_eq!(words_before(text, &tokens, pos, 3), vec!["выдан"]);
    }
}
