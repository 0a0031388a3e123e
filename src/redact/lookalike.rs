//! Look-alike characters folded to ASCII before detection, so that a phone number written
//! with a non-breaking hyphen, a narrow no-break space or full-width digits is found like
//! one written with `-`, ` ` and `0`-`9`. Zero-width characters are dropped.

use std::borrow::Cow;

/// A text with its look-alike characters folded, and the way back to the original offsets.
pub(crate) struct Folded<'a> {
    pub text: Cow<'a, str>,
    /// For each byte of the folded text, the offset in the original of the character that
    /// produced it, then one entry for the end. Empty when nothing was folded.
    origin: Vec<usize>,
}

impl Folded<'_> {
    /// Returns the offset in the original text of byte `at` of the folded text, which may be
    /// the folded text's length.
    pub fn original(&self, at: usize) -> usize {
        if self.origin.is_empty() {
            at
        } else {
            self.origin[at]
        }
    }
}

/// Returns the ASCII stand-in of `c`: `Some("")` for a character to drop, `None` to keep it.
fn stand_in(c: char) -> Option<&'static str> {
    let ascii = match c {
        // Hyphens, dashes and minus signs.
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => "-",
        // Spaces of other widths; U+00A0 stays, because the detectors accept it.
        '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => " ",
        // Zero-width characters and the byte order mark.
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => "",
        '\u{FF0B}' => "+",
        '\u{FF08}' => "(",
        '\u{FF09}' => ")",
        '\u{FF0E}' => ".",
        '\u{FF20}' => "@",
        '\u{FF10}'..='\u{FF19}' => {
            const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
            DIGITS[(c as u32 - 0xFF10) as usize]
        }
        _ => return None,
    };
    Some(ascii)
}

/// Folds the look-alike characters of `text`. Borrows `text` when it has none.
pub(crate) fn fold(text: &str) -> Folded<'_> {
    if text.is_ascii() || !text.chars().any(|c| stand_in(c).is_some()) {
        return Folded {
            text: Cow::Borrowed(text),
            origin: Vec::new(),
        };
    }
    let mut folded = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    for (at, c) in text.char_indices() {
        match stand_in(c) {
            Some(ascii) => folded.push_str(ascii),
            None => folded.push(c),
        }
        origin.resize(folded.len(), at);
    }
    origin.push(text.len());
    Folded {
        text: Cow::Owned(folded),
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_text_is_borrowed() {
        let folded = fold("тел. +7 917 555-44-22");
        assert!(matches!(folded.text, Cow::Borrowed(_)));
        assert_eq!(folded.original(5), 5);
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let text = "a\u{2011}b\u{200B}c\u{FF17}";
        let folded = fold(text);
        assert_eq!(folded.text, "a-bc7");
        assert_eq!(folded.original(0), 0);
        assert_eq!(folded.original(1), 1);
        assert_eq!(folded.original(2), 4);
        // `c` follows the dropped zero-width space, which the span before it keeps.
        assert_eq!(folded.original(3), 8);
        assert_eq!(folded.original(4), 9);
        assert_eq!(folded.original(5), text.len());
    }
}
