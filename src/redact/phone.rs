//! Phone numbers: Russian and foreign numbers in digits, validated and normalised to E.164 by
//! the `phonenumber` crate, 7-digit city numbers next to a phone word, and numbers spelled
//! out in Russian words.

use super::numwords;
use super::text::{
    Token, TokenKind, WordMap, is_ascii_digit_at, may_have_non_ascii_digit, space_width,
    words_before,
};
use super::{Detection, PiiKind};
use regex::Regex;
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

/// A run of ASCII digits inside a candidate, as a byte range of the text.
struct Group {
    start: usize,
    end: usize,
}

pub(crate) fn detect(text: &str, tokens: &[Token], has_digits: bool, out: &mut Vec<Detection>) {
    if has_digits {
        for (start, end) in candidates(text, tokens) {
            detect_in_candidate(text, tokens, start, end, out);
        }
    }
    detect_spoken(text, tokens, out);
}

/// Longest head of a [`CANDIDATE`] match before its first digit: "+", a no-break space,
/// "(" and another no-break space.
const MAX_HEAD_BYTES: usize = 6;

/// Returns the byte ranges of the [`CANDIDATE`] matches in `text`. A hand-written scanner
/// finds the same ranges several times faster than the regex. Texts that may contain
/// non-ASCII digits, which `\d` also matches, are searched with the regex.
fn candidates(text: &str, tokens: &[Token]) -> Vec<(usize, usize)> {
    if may_have_non_ascii_digit(text) {
        return CANDIDATE
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
    }
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut searched_to = 0;
    // The first digit of a match starts a number token, and no digit lies between the end of
    // the previous match and that token.
    for token in tokens {
        if token.kind != TokenKind::Number || token.start < searched_to {
            continue;
        }
        let first_digit = token.start;
        // The leftmost head that leads to this digit starts the match, as in the regex.
        let earliest = searched_to.max(first_digit.saturating_sub(MAX_HEAD_BYTES));
        let start = (earliest..first_digit)
            .find(|&at| candidate_first_digit(bytes, at) == Some(first_digit))
            .unwrap_or(first_digit);
        let end = candidate_end(bytes, first_digit);
        found.push((start, end));
        searched_to = end;
    }
    found
}

/// Matches the head of [`CANDIDATE`] at `at`: an optional "+" and an optional "(", each
/// followed by an optional space, then a digit. Returns the index of that digit.
fn candidate_first_digit(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    if bytes[i] == b'+' {
        i += 1;
        i += space_width(bytes, i).unwrap_or(0);
    }
    if bytes.get(i) == Some(&b'(') {
        i += 1;
        i += space_width(bytes, i).unwrap_or(0);
    }
    is_ascii_digit_at(bytes, i).then_some(i)
}

/// Returns the end of a [`CANDIDATE`] match whose first digit is at `first_digit`: the match
/// goes on while at most three separators lead to the next digit.
fn candidate_end(bytes: &[u8], first_digit: usize) -> usize {
    let mut end = first_digit + 1;
    loop {
        let mut next = end;
        let mut separators = 0;
        while separators <= 3 {
            let width = match bytes.get(next) {
                Some(b' ' | b'\t' | b'-' | b'.' | b'(' | b')') => 1,
                Some(0xC2) if bytes.get(next + 1) == Some(&0xA0) => 2,
                _ => break,
            };
            next += width;
            separators += 1;
        }
        if separators <= 3 && is_ascii_digit_at(bytes, next) {
            end = next + 1;
        } else {
            return end;
        }
    }
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
    let all_digits: String = groups.iter().map(|g| &text[g.start..g.end]).collect();
    if all_digits.len() == 11 && all_digits[1..].starts_with("800") {
        return;
    }
    // Every phone form accepted by `classify` has at least 7 digits.
    if all_digits.len() < 7 {
        return;
    }
    // `digit_offsets[g]` is the number of digits before group `g`, so the digits of groups
    // `i..=j` are `all_digits[digit_offsets[i]..digit_offsets[j + 1]]`.
    let mut digit_offsets = Vec::with_capacity(groups.len() + 1);
    digit_offsets.push(0);
    for group in &groups {
        digit_offsets.push(digit_offsets[digit_offsets.len() - 1] + group.end - group.start);
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
            let digits = &all_digits[digit_offsets[i]..digit_offsets[j + 1]];
            if digits.len() > 15 {
                continue;
            }
            if digits.len() < 7 {
                // Shorter windows have fewer digits still, and `classify` rejects them all.
                break;
            }
            let plus = has_plus && i == 0;
            if let Some((normalized, confidence)) = classify(digits, plus, phone_context, j - i + 1)
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

/// Results of [`validate`] by candidate, because parsing and validating with phonenumber
/// 0.3.10 costs about 5 µs for a Russian number and up to 25 µs for some foreign ones
/// (release build, 2-core x86 machine, after the metadata is loaded), and a client often
/// repeats their number within a conversation.
static VALIDATED: LazyLock<Mutex<WordMap<String, Option<String>>>> =
    LazyLock::new(|| Mutex::new(WordMap::default()));

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
        if token.kind != TokenKind::Word || !numwords::is_number_word(token.folded) {
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
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
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
    fn candidate_scanner_matches_regex() {
        let alphabet: Vec<char> = "0123456789 \t\u{a0}+-.()/a:ж٣".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..state % 24 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let expected: Vec<(usize, usize)> = CANDIDATE
                .find_iter(&text)
                .map(|m| (m.start(), m.end()))
                .collect();
            let mut buffer = String::new();
            let tokens = tokenize(&text, &mut buffer);
            assert_eq!(candidates(&text, &tokens), expected, "{text:?}");
        }
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
