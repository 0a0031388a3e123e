//! Street addresses: optional postal code and city, a street word, the street name, a house
//! number and optional building, flat and entrance. Also the spoken form
//! "на бакалинской двадцать пять" (street adjective plus a house number in words).

use super::numwords;
use super::text::{Token, TokenKind};
use super::{Detection, PiiKind};
use regex::Regex;
use std::sync::LazyLock;

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    // The regex crate's lazy DFA cannot evaluate a Unicode \b on Cyrillic text and falls
    // back to a slow engine, so word edges are written as explicit character classes.
    let lead = r"(?:^|[^\p{L}\p{N}_])";
    let postal = r"(?:\d{6}\s*,?\s*)?";
    let city = r"(?:(?i:г\.|гор\.|город)\s*\p{Lu}[\p{L}\-]+\s*,?\s*)?";
    let street_word = r"(?i:(?:ул|пр-т|просп|пер|б-р|бул|наб|пл|мкр|ш)\.|(?:улиц[аеуы]|проспект[еа]?|пр-т|переул(?:ок|ке)|бульвар[еа]?|шоссе|набережн(?:ая|ой)|площад[ьи]|микрорайон[еа]?|мкр|проезд[еа]?|тракт[еа]?|тупик[еа]?|аллея|аллее)\s)";
    let street_name = r"\s*(?:[\p{L}\d][\p{L}\d\-]*\.?\s+){0,2}?[\p{L}][\p{L}\-]*";
    let house = r"\s*,?\s*(?:(?i:д\.|дом)\s*)?\d{1,4}[а-яА-Я]?(?:\s?/\s?\d{1,4}[а-яА-Я]?)?";
    let extras = r"(?:\s*,?\s*(?i:корп\.?|корпус|к\.|стр\.?|строение|кв\.?|квартира|подъезд|под\.|эт\.?|этаж|офис|оф\.)\s*\d{1,4}[а-яА-Я]?)*";
    Regex::new(&format!(
        "{lead}({postal}{city}{street_word}{street_name}{house}{extras})"
    ))
    .expect("static regex")
});

/// Street abbreviations that are whole tokens.
const STREET_ABBREVIATIONS: &[&str] = &[
    "ул",
    "пр-т",
    "просп",
    "пер",
    "б-р",
    "бул",
    "наб",
    "пл",
    "мкр",
    "ш",
];

/// Stems of the full street words.
const STREET_STEMS: &[&str] = &[
    "улиц",
    "проспект",
    "переул",
    "бульвар",
    "набережн",
    "площад",
    "микрорайон",
    "шоссе",
    "проезд",
    "тракт",
    "тупик",
    "алле",
];

/// Checks whether `first` is the first letter of an entry of [`STREET_ABBREVIATIONS`] or
/// [`STREET_STEMS`], which rejects most tokens after one comparison. A unit test keeps it in
/// step with the lists.
fn can_start_street_word(first: char) -> bool {
    matches!(first, 'у' | 'п' | 'б' | 'н' | 'м' | 'ш' | 'т' | 'а')
}

/// Checks whether a token can start a street designation. Texts without one skip the
/// costly [`ADDRESS`] regex.
fn is_street_word(folded: &str) -> bool {
    folded.chars().next().is_some_and(can_start_street_word)
        && (STREET_ABBREVIATIONS.contains(&folded)
            || STREET_STEMS.iter().any(|p| folded.starts_with(p)))
}

pub(crate) fn detect(text: &str, tokens: &[Token], out: &mut Vec<Detection>) {
    if tokens.iter().any(|t| is_street_word(t.folded)) {
        detect_written(text, out);
    }
    detect_spoken(text, tokens, out);
}

fn detect_written(text: &str, out: &mut Vec<Detection>) {
    for caps in ADDRESS.captures_iter(text) {
        let Some(m) = caps.get(1) else { continue };
        let mut end = m.end();
        match text[end..].chars().next() {
            // The house number ran into a longer number: not an address we understand.
            Some(c) if c.is_ascii_digit() => continue,
            // "42кв": the optional house letter was the start of the next word.
            Some(c) if c.is_alphabetic() => {
                let last = text[..end].chars().next_back();
                if last.is_some_and(char::is_alphabetic) {
                    end -= last.map_or(0, char::len_utf8);
                }
            }
            _ => {}
        }
        out.push(Detection::new(PiiKind::Address, m.start(), end, 0.9));
    }
}

/// "на бакалинской двадцать пять": a lowercase or capitalised street adjective after "на" or
/// "по", followed by a house number in digits or words.
fn detect_spoken(text: &str, tokens: &[Token], out: &mut Vec<Detection>) {
    for i in 1..tokens.len().saturating_sub(1) {
        let street = &tokens[i];
        if street.kind != TokenKind::Word || !matches!(tokens[i - 1].folded, "на" | "по") {
            continue;
        }
        let adjective = ["ской", "цкой", "ского", "цкого"]
            .iter()
            .any(|s| street.folded.ends_with(*s))
            && street.folded.chars().count() >= 7;
        if !adjective {
            continue;
        }
        let gap = &text[street.end..tokens[i + 1].start];
        if !gap.trim().is_empty() {
            continue;
        }
        let Some(group) = numwords::group_at(tokens, i + 1) else {
            continue;
        };
        if group.value == 0 || group.value > 999 {
            continue;
        }
        let end = tokens[group.last - 1].end;
        out.push(Detection::new(PiiKind::Address, street.start, end, 0.6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn found(text: &str) -> Vec<String> {
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
        let mut out = Vec::new();
        detect(text, &tokens, &mut out);
        out.into_iter()
            .map(|d| text[d.start..d.end].to_string())
            .collect()
    }

    #[test]
    fn written_addresses() {
        assert_eq!(
            found("адрес: г. Уфа, ул. Цюрупы, д. 42, кв. 15. Удобно"),
            vec!["г. Уфа, ул. Цюрупы, д. 42, кв. 15"]
        );
        assert_eq!(
            found("Адрес: ул. Рихарда Зорге, 58/2, кв. 104, подъезд 3. Звонить"),
            vec!["ул. Рихарда Зорге, 58/2, кв. 104, подъезд 3"]
        );
        assert_eq!(
            found("Мы на Сипайлово, ул. Академика Королёва 10, кв. 87"),
            vec!["ул. Академика Королёва 10, кв. 87"]
        );
        assert_eq!(
            found("450077, г. Уфа, проспект Октября, дом 5, корп. 2, квартира 7"),
            vec!["450077, г. Уфа, проспект Октября, дом 5, корп. 2, квартира 7"]
        );
    }

    #[test]
    fn spoken_address() {
        assert_eq!(
            found("стоит во дворе на бакалинской двадцать пять можно"),
            vec!["бакалинской двадцать пять"]
        );
    }

    #[test]
    fn street_first_letters_cover_all_words() {
        for word in STREET_ABBREVIATIONS.iter().chain(STREET_STEMS) {
            let first = word.chars().next().unwrap();
            assert!(can_start_street_word(first), "{word}");
        }
    }

    #[test]
    fn street_without_house_is_left() {
        assert!(found("мы рядом с ул. Ленина").is_empty());
        assert!(found("в Дёмский район").is_empty());
    }
}
