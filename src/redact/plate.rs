//! Russian car plates: letter, three digits, two letters, region of 2–3 digits
//! ("А123ВС 77", "а123вс777", "M274XE102" with Latin look-alikes), and plates spelled out in
//! a voice transcript ("ем семьсот сорок три ка ха сто два").

use super::numwords;
use super::text::{Token, TokenKind};
use super::{Detection, PiiKind};
use regex::Regex;
use std::sync::LazyLock;

/// Only the 12 letters that look the same in Cyrillic and Latin are used on plates.
const PLATE_LETTERS: &str = "АВЕКМНОРСТУХавекмнорстухABEKMHOPCTYXabekmhopctyx";

static PLATE: LazyLock<Regex> = LazyLock::new(|| {
    let l = format!("[{PLATE_LETTERS}]");
    Regex::new(&format!(
        r"{l}[ \u{{a0}}]?\d{{3}}[ \u{{a0}}]?{l}{l}[ \u{{a0}}]?(?:\d{{2,3}})"
    ))
    .expect("static regex")
});

/// Maps a Latin look-alike to its Cyrillic plate letter, uppercase.
fn to_cyrillic(c: char) -> char {
    match c.to_uppercase().next().unwrap_or(c) {
        'A' => 'А',
        'B' => 'В',
        'E' => 'Е',
        'K' => 'К',
        'M' => 'М',
        'H' => 'Н',
        'O' => 'О',
        'P' => 'Р',
        'C' => 'С',
        'T' => 'Т',
        'Y' => 'У',
        'X' => 'Х',
        other => other,
    }
}

fn normalize(plate: &str) -> String {
    plate
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(to_cyrillic)
        .collect()
}

pub(crate) fn detect(text: &str, tokens: &[Token], out: &mut Vec<Detection>) {
    // Every written plate has a three-digit token; skip the regex scan otherwise.
    let three_digits = tokens
        .iter()
        .any(|t| t.kind == TokenKind::Number && t.end - t.start == 3);
    if three_digits {
        detect_written(text, out);
    }
    detect_spoken(tokens, out);
}

fn detect_written(text: &str, out: &mut Vec<Detection>) {
    for m in PLATE.find_iter(text) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            continue;
        }
        let plate = m.as_str();
        if plate.contains("000") && plate.chars().filter(char::is_ascii_digit).count() == 5 {
            continue;
        }
        // A lowercase one-letter word plus digits ("в 118 ту 102") is more often prose.
        let spaced = plate.chars().nth(1).is_some_and(char::is_whitespace);
        let lowercase = plate.chars().next().is_some_and(char::is_lowercase);
        let confidence = if spaced && lowercase { 0.5 } else { 0.9 };
        out.push(
            Detection::new(PiiKind::CarPlate, m.start(), m.end(), confidence)
                .with_normalized(normalize(plate)),
        );
    }
}

/// Spoken Russian names of the plate letters: "ем" and "эм" are М, "ха" is Х.
fn spoken_letter(word: &str) -> Option<char> {
    Some(match word {
        "а" => 'А',
        "в" | "вэ" | "ве" => 'В',
        "е" | "э" => 'Е',
        "к" | "ка" => 'К',
        "м" | "эм" | "ем" => 'М',
        "н" | "эн" | "ен" => 'Н',
        "о" => 'О',
        "р" | "эр" | "ер" => 'Р',
        "с" | "эс" | "ес" => 'С',
        "т" | "тэ" | "те" => 'Т',
        "у" => 'У',
        "х" | "ха" => 'Х',
        _ => return None,
    })
}

fn detect_spoken(tokens: &[Token], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i + 4 < tokens.len() {
        let Some(first) = spoken_letter(tokens[i].folded) else {
            i += 1;
            continue;
        };
        let Some(number) = numwords::group_at(tokens, i + 1) else {
            i += 1;
            continue;
        };
        let spoken_number = tokens[i + 1].kind == TokenKind::Word;
        let j = number.last;
        let letters = (
            tokens.get(j).and_then(|t| spoken_letter(t.folded)),
            tokens.get(j + 1).and_then(|t| spoken_letter(t.folded)),
        );
        let (Some(second), Some(third)) = letters else {
            i += 1;
            continue;
        };
        let Some(region) = numwords::group_at(tokens, j + 2) else {
            i += 1;
            continue;
        };
        let plausible = (1..=999).contains(&number.value)
            && (1..=999).contains(&region.value)
            && (spoken_number || tokens[j + 2].kind == TokenKind::Word);
        if plausible {
            let end = tokens[region.last - 1].end;
            let normalized = format!("{first}{:03}{second}{third}{}", number.value, region.value);
            out.push(
                Detection::new(PiiKind::CarPlate, tokens[i].start, end, 0.7)
                    .with_normalized(normalized),
            );
            i = region.last;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn found(text: &str) -> Vec<(String, String)> {
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
        let mut out = Vec::new();
        detect(text, &tokens, &mut out);
        out.into_iter()
            .map(|d| {
                (
                    text[d.start..d.end].to_string(),
                    d.normalized.unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn written_plates() {
        assert_eq!(found("Киа Рио А482КМ 102, подъеду")[0].1, "А482КМ102");
        assert_eq!(found("номер M274XE102.")[0].1, "М274ХЕ102");
        assert_eq!(found("номер Р 090 РР 02")[0].0, "Р 090 РР 02");
        assert_eq!(found("а123вс777")[0].1, "А123ВС777");
    }

    #[test]
    fn models_and_sizes_are_not_plates() {
        assert!(found("BMW X5, R17, камри 70, ТО-2").is_empty());
    }

    #[test]
    fn spoken_plate() {
        let text = "номер машины ем семьсот сорок три ка ха сто два меня зовут";
        let found = found(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "ем семьсот сорок три ка ха сто два");
        assert_eq!(found[0].1, "М743КХ102");
    }
}
