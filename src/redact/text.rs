//! Tokens shared by the detectors: letter words and ASCII digit runs with byte offsets.

use std::hash::{BuildHasherDefault, Hasher};

/// A small multiplicative hasher for short word keys in the static dictionaries. The keys
/// are fixed data, so the DoS resistance of the default SipHash is not needed.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

pub(crate) type WordMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<WordHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Word,
    Number,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
    /// Lowercase with ё folded to е.
    pub folded: String,
}

/// Splits `text` into words (letters, with inner hyphens or apostrophes) and digit runs.
/// Emoji, punctuation and spaces separate tokens, so "Лиле🙏" yields "Лиле".
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(text.len() / 6 + 1);
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        if is_letter(c) {
            let mut end = start + c.len_utf8();
            while let Some(&(i, next)) = iter.peek() {
                if is_letter(next) {
                    end = i + next.len_utf8();
                    iter.next();
                } else if next == '-' || next == '\'' {
                    // Keep "пр-т" and "Анна-Мария" whole, but not "слово-" or "ТО-2".
                    let after = text[i + 1..].chars().next();
                    if after.is_some_and(is_letter) {
                        end = i + 1;
                        iter.next();
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            tokens.push(Token {
                kind: TokenKind::Word,
                start,
                end,
                folded: fold(&text[start..end]),
            });
        } else if c.is_ascii_digit() {
            let mut end = start + 1;
            while let Some(&(i, next)) = iter.peek() {
                if next.is_ascii_digit() {
                    end = i + 1;
                    iter.next();
                } else {
                    break;
                }
            }
            tokens.push(Token {
                kind: TokenKind::Number,
                start,
                end,
                folded: text[start..end].to_string(),
            });
        }
    }
    tokens
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
    out
}

pub(crate) fn is_capitalized(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
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

/// Returns the index of the first token that starts at or after `pos`.
pub(crate) fn first_token_at(tokens: &[Token], pos: usize) -> usize {
    tokens.partition_point(|t| t.start < pos)
}

/// Returns up to `n` folded words directly before byte `pos`, nearest first. It stops at a
/// number token or a line break, so context from an earlier field or value is not used.
pub(crate) fn words_before<'a>(
    text: &str,
    tokens: &'a [Token],
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
        out.push(token.folded.as_str());
        boundary = token.start;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_splits_emoji_and_keeps_hyphens() {
        let tokens = tokenize("💅Маша к Лиле🙏 пр-т ТО-2");
        let words: Vec<&str> = tokens.iter().map(|t| t.folded.as_str()).collect();
        assert_eq!(words, vec!["маша", "к", "лиле", "пр-т", "то", "2"]);
    }

    #[test]
    fn fold_merges_yo() {
        assert_eq!(fold("Семён КОРОЛЁВА"), "семен королева");
    }

    #[test]
    fn words_before_stops_at_numbers() {
        let text = "паспорт 8016 752930 выдан 11.05";
        let tokens = tokenize(text);
        let pos = text.find("11").unwrap();
        assert_eq!(words_before(text, &tokens, pos, 3), vec!["выдан"]);
    }
}
