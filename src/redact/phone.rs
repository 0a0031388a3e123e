//! Phone numbers: Russian and foreign numbers in digits, validated and normalised to E.164 by
//! the `phonenumber` crate, 7-digit city numbers next to a phone word, and numbers spelled
//! out in Russian words.

use super::numwords;
use super::text::{Token, TokenKind, words_before};
use super::{Detection, PiiKind};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Digits with up to three separators (space, dash, dot, brackets) between them, optionally
/// after a plus sign. Line breaks never join two numbers.
static CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+[ \u{a0}]?)?(?:\([ \u{a0}]?)?\d(?:[ \t\u{a0}\-.()]{0,3}\d)*")
        .expect("static regex")
});

/// Words after which a number is a phone ("тел", "звоните", "WhatsApp").
fn is_phone_word(word: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "тел",
        "звон",
        "позвон",
        "перезвон",
        "дозвон",
        "моб",
        "сотов",
        "домашн",
        "городск",
        "ватсап",
        "вотсап",
        "вацап",
        "whatsapp",
        "viber",
        "вайбер",
        "phone",
        "tel",
        "mob",
        "call",
        "связ",
        "контакт",
    ];
    word == "номер" || word == "номеру" || PREFIXES.iter().any(|p| word.starts_with(p))
}

/// Words after which a number is a document, order or booking number, not a phone.
fn is_reference_word(word: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "заказ",
        "заявк",
        "договор",
        "счет",
        "чек",
        "платеж",
        "транзакц",
        "снилс",
        "инн",
        "полис",
        "омс",
        "паспорт",
        "сери",
        "карт",
        "card",
        "order",
        "машин",
        "авто",
        "госномер",
        "запис",
        "талон",
        "квитанц",
        "накладн",
        "трек",
        "артикул",
        "лицев",
    ];
    PREFIXES.iter().any(|p| word.starts_with(p))
}

struct Group {
    start: usize,
    end: usize,
    digits: String,
}

pub(crate) fn detect(text: &str, tokens: &[Token], has_digits: bool, out: &mut Vec<Detection>) {
    if has_digits {
        for m in CANDIDATE.find_iter(text) {
            detect_in_candidate(text, tokens, m.start(), m.end(), out);
        }
    }
    detect_spoken(text, tokens, out);
}

fn detect_in_candidate(
    text: &str,
    tokens: &[Token],
    start: usize,
    end: usize,
    out: &mut Vec<Detection>,
) {
    let bytes = text.as_bytes();
    // A number glued to letters or to a path ("C5-C6", "086/у", UUID parts) is not a phone.
    let before = text[..start].chars().next_back();
    if before.is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '_' || c == '№' || c == '#')
    {
        return;
    }
    let after = text[end..].chars().next();
    if after.is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '_') {
        return;
    }
    let has_plus = bytes[start] == b'+';
    let groups = digit_groups(text, start, end);
    if groups.is_empty() || groups.len() > 24 {
        return;
    }
    // NOTE: 8-800 numbers are toll-free business lines and never a client's own phone, so
    // no part of one is reported either.
    let all_digits: String = groups.iter().map(|g| g.digits.as_str()).collect();
    if all_digits.len() == 11 && all_digits[1..].starts_with("800") {
        return;
    }
    let context = words_before(text, tokens, start, 3);
    if context.first().is_some_and(|w| is_reference_word(w)) {
        return;
    }
    let phone_context =
        context.iter().any(|w| is_phone_word(w)) && !context.iter().any(|w| is_reference_word(w));

    let mut i = 0;
    while i < groups.len() {
        if i > 0 && !separator_splits(text, groups[i - 1].end, groups[i].start) {
            i += 1;
            continue;
        }
        let mut matched = false;
        for j in (i..groups.len()).rev() {
            if j + 1 < groups.len() && !separator_splits(text, groups[j].end, groups[j + 1].start) {
                continue;
            }
            let digits: String = groups[i..=j].iter().map(|g| g.digits.as_str()).collect();
            if digits.len() > 15 {
                continue;
            }
            let plus = has_plus && i == 0;
            if let Some((normalized, confidence)) =
                classify(&digits, plus, phone_context, j - i + 1)
            {
                let span_start = if plus {
                    start
                } else {
                    opening_bracket(text, groups[i].start)
                };
                out.push(
                    Detection::new(PiiKind::Phone, span_start, groups[j].end, confidence)
                        .with_normalized(normalized),
                );
                i = j + 1;
                matched = true;
                break;
            }
        }
        if !matched {
            i += 1;
        }
    }
}

/// Includes a "(" that directly precedes the first digit, as in "(347) 216-43-09".
fn opening_bracket(text: &str, digit_start: usize) -> usize {
    let head = &text[..digit_start];
    let trimmed = head.trim_end_matches([' ', '\u{a0}']);
    if trimmed.ends_with('(') {
        trimmed.len() - 1
    } else {
        digit_start
    }
}

/// Checks that the writer left a space between two digit groups. A phone window starts and
/// ends only there, so "14.07.1995" is never cut into a phone and a date glued to it.
fn separator_splits(text: &str, left_end: usize, right_start: usize) -> bool {
    let sep = &text[left_end..right_start];
    sep.contains([' ', '\u{a0}', '\t'])
}

fn digit_groups(text: &str, start: usize, end: usize) -> Vec<Group> {
    let mut groups = Vec::new();
    let bytes = text.as_bytes();
    let mut i = start;
    while i < end {
        if bytes[i].is_ascii_digit() {
            let group_start = i;
            while i < end && bytes[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(Group {
                start: group_start,
                end: i,
                digits: text[group_start..i].to_string(),
            });
        } else {
            i += 1;
        }
    }
    groups
}

/// Decides whether `digits` is a phone number; returns the normalised value and confidence.
fn classify(
    digits: &str,
    plus: bool,
    phone_context: bool,
    group_count: usize,
) -> Option<(String, f32)> {
    let boost = if phone_context { 0.05 } else { 0.0 };
    let len = digits.len();
    if plus {
        if !(8..=15).contains(&len) {
            return None;
        }
        return match validate(&format!("+{digits}")) {
            Some(e164) => Some((e164, 0.9 + boost)),
            None if phone_context && len >= 10 => Some((format!("+{digits}"), 0.6)),
            None => None,
        };
    }
    if len == 11 && (digits.starts_with('8') || digits.starts_with('7')) {
        if digits[1..].starts_with("800") {
            return None;
        }
        let e164 = validate(&format!("+7{}", &digits[1..]))?;
        return Some((e164, 0.85 + boost));
    }
    if len == 10 && (digits.starts_with('9') || phone_context) {
        let e164 = validate(&format!("+7{digits}"))?;
        return Some((e164, 0.75 + boost * 3.0));
    }
    if len == 7 && phone_context && group_count <= 4 && !digits.starts_with('0') {
        // NOTE: a city number without its area code cannot be written in E.164, so only
        // its digits are kept.
        return Some((digits.to_string(), 0.7));
    }
    None
}

/// Results of [`validate`] by candidate, because `phonenumber::is_valid` costs about 40 µs
/// a call (phonenumber 0.3.10, measured in release on a 2-core x86 machine) and a client
/// often repeats their number within a conversation.
static VALIDATED: LazyLock<Mutex<HashMap<String, Option<String>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Maximum cached candidates; the cache is emptied when it is full.
const VALIDATED_CAPACITY: usize = 4096;

/// Parses and validates a number with the `phonenumber` crate; returns E.164 when valid.
fn validate(candidate: &str) -> Option<String> {
    if let Ok(cache) = VALIDATED.lock()
        && let Some(result) = cache.get(candidate)
    {
        return result.clone();
    }
    let result = validate_uncached(candidate);
    if let Ok(mut cache) = VALIDATED.lock() {
        if cache.len() >= VALIDATED_CAPACITY {
            cache.clear();
        }
        cache.insert(candidate.to_string(), result.clone());
    }
    result
}

/// Returns the E.164 form of a phone number given on its own, such as a contact field.
pub(crate) fn normalize(candidate: &str) -> Option<String> {
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.len() {
        11 if digits.starts_with('8') => format!("+7{}", &digits[1..]),
        _ if candidate.trim_start().starts_with('+') => format!("+{digits}"),
        10 => format!("+7{digits}"),
        _ => format!("+{digits}"),
    };
    validate(&national)
}

fn validate_uncached(candidate: &str) -> Option<String> {
    let number = phonenumber::parse(None, candidate).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Finds phones spelled in Russian words: "восемь девятьсот семнадцать …".
fn detect_spoken(text: &str, tokens: &[Token], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.kind != TokenKind::Word || !numwords::is_number_word(&token.folded) {
            i += 1;
            continue;
        }
        let plus = i > 0 && tokens[i - 1].folded == "плюс";
        let groups = numwords::groups_from(text, tokens, i, 12);
        let Some(last) = groups.last() else {
            i += 1;
            continue;
        };
        let digits: String = groups.iter().map(|g| g.digits.as_str()).collect();
        let last_token = last.last;
        let found = classify(&digits, plus, true, groups.len()).filter(|_| digits.len() >= 10);
        if let Some((normalized, confidence)) = found {
            let start = if plus {
                tokens[i - 1].start
            } else {
                token.start
            };
            let end = tokens[last_token - 1].end;
            out.push(
                Detection::new(PiiKind::Phone, start, end, confidence - 0.1)
                    .with_normalized(normalized),
            );
        }
        i = last_token.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn phones(text: &str) -> Vec<(String, String)> {
        let tokens = tokenize(text);
        let mut out = Vec::new();
        detect(text, &tokens, true, &mut out);
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
    fn russian_formats_normalise_to_e164() {
        for written in [
            "+7 917 482-16-39",
            "89174821639",
            "8-917-482-16-39",
            "8(917)482-16-39",
            "8 (917) 482 16 39",
            "8.917.482.16.39",
            "+7-917-482-16-39",
            "8 9 1 7 4 8 2 1 6 3 9",
            "8 917 48 21 639",
        ] {
            let found = phones(&format!("пишите {written} спасибо"));
            assert_eq!(found.len(), 1, "{written}");
            assert_eq!(found[0].1, "+79174821639", "{written}");
        }
    }

    #[test]
    fn bracketed_area_code_is_inside_span() {
        let found = phones("звоните (347) 216-43-09");
        assert_eq!(found[0].0, "(347) 216-43-09");
    }

    #[test]
    fn foreign_numbers() {
        assert_eq!(phones("WhatsApp +44 7700 900123")[0].1, "+447700900123");
        assert_eq!(phones("call +1 212 555 0199").len(), 1);
        assert_eq!(phones("tel +49 30 901820")[0].1, "+4930901820");
    }

    #[test]
    fn city_number_needs_phone_word() {
        assert_eq!(phones("перезвоните на домашний 246-13-58").len(), 1);
        assert_eq!(phones("тел.: 2-46-13-58").len(), 1);
        assert!(phones("номер заявки 7781043").is_empty());
        assert!(phones("заказ № 4829103").is_empty());
    }

    #[test]
    fn dates_prices_and_toll_free_are_not_phones() {
        assert!(phones("16.03.2024 в 12:30").is_empty());
        assert!(phones("стрижка 1500 руб").is_empty());
        assert!(phones("звоните 8 800 301-47-92").is_empty());
    }

    #[test]
    fn phone_next_to_price() {
        let found = phones("стрижка 1500 руб, тел 89174821639");
        assert_eq!(
            found,
            vec![("89174821639".to_string(), "+79174821639".to_string())]
        );
    }

    #[test]
    fn spoken_phone() {
        let text = "мой номер восемь девятьсот семнадцать четыреста восемьдесят два шестнадцать тридцать девять перезвоните";
        let found = phones(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "+79174821639");
        assert!(found[0].0.ends_with("тридцать девять"));
    }
}

#[cfg(test)]
mod timing {
    #[test]
    #[ignore]
    fn validate_cost() {
        let t = std::time::Instant::now();
        for i in 0..2000u64 {
            let _ = super::validate_uncached(&format!("+7917{:07}", 4821639 + i));
        }
        println!(
            "validate: {:.1} us per call",
            t.elapsed().as_secs_f64() / 2000.0 * 1e6
        );
        let t = std::time::Instant::now();
        for i in 0..2000u64 {
            let _ = phonenumber::parse(None, format!("+7917{:07}", 4821639 + i));
        }
        println!(
            "parse only: {:.1} us per call",
            t.elapsed().as_secs_f64() / 2000.0 * 1e6
        );
    }
}
