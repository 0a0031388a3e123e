//! Document numbers: bank card (Luhn), SNILS (mod 101 control number), INN (weighted
//! checksums), passport series and number, OMS policy.
//!
//! A number right after its document word ("СНИЛС", "на карту") is the client's own even when
//! its checksum fails, so it is redacted with lower confidence. A checksum-valid number
//! without such a word is redacted only where no other reading (order, payment or company
//! reference) is plausible.

use super::text::{
    Token, TokenKind, is_ascii_digit_at, may_have_non_ascii_digit, space_width, words_before,
};
use super::{Detection, PiiKind};
use regex::Regex;
use std::sync::LazyLock;

/// Digits with single spaces or dashes between groups.
static RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d(?:[ \u{a0}\-]?\d)*").expect("static regex"));

/// "серия 8016 номер 752930" and "серия 80 16 № 752930".
static PASSPORT_SERIES_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)сери[яи]\s*:?\s*(\d{2}\s?\d{2})\s*,?\s*(?:номер|№|н\.)\s*:?\s*(\d{6})")
        .expect("static regex")
});

/// Digits in the shortest document number that [`classify`] accepts (a passport or a
/// 10-digit INN).
const MIN_DOCUMENT_DIGITS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    None,
    Card,
    Snils,
    Inn,
    Passport,
    Oms,
}

struct Facts {
    context: Context,
    /// A company is named nearby ("ООО", "организации"), so an INN is not personal.
    company: bool,
    /// "мой", "my": the writer calls the number their own.
    personal: bool,
    /// An order, payment or contract reference is named nearby.
    reference: bool,
}

fn facts(text: &str, tokens: &[Token], start: usize) -> Facts {
    let words = words_before(text, tokens, start, 5);
    let mut context = Context::None;
    // The nearest document word decides ("полис ОМС" and "карта ОМС" are both OMS).
    for word in &words {
        let found = if word.starts_with("снилс") || *word == "snils" || word.starts_with("страхов")
        {
            Context::Snils
        } else if *word == "инн" || *word == "inn" {
            Context::Inn
        } else if word.starts_with("паспорт") || word.starts_with("серия") || *word == "passport"
        {
            Context::Passport
        } else if *word == "омс" || word.starts_with("полис") || *word == "oms" {
            Context::Oms
        } else if word.starts_with("карт") || *word == "card" || *word == "visa" || *word == "мир"
        {
            Context::Card
        } else {
            Context::None
        };
        if found != Context::None && context == Context::None {
            context = found;
        }
        if found == Context::Oms {
            context = Context::Oms;
        }
    }
    let company = words.iter().any(|w| {
        matches!(
            *w,
            "ооо" | "оао" | "зао" | "пао" | "ао" | "нко" | "ano" | "llc"
        ) || w.starts_with("организац")
            || w.starts_with("компани")
            || w.starts_with("фирм")
            || w.starts_with("юрлиц")
            || w.starts_with("предприяти")
    }) || text[..start].trim_end().ends_with(['»', '"']);
    let personal = words
        .iter()
        .any(|w| matches!(*w, "мой" | "моя" | "мои" | "my" | "личный" | "свой"));
    let head = text[..start].trim_end();
    let reference = head.ends_with('№')
        || head.ends_with('#')
        || words.iter().any(|w| {
            [
                "заказ",
                "заявк",
                "договор",
                "счет",
                "чек",
                "платеж",
                "транзакц",
                "order",
                "ref",
                "артикул",
                "накладн",
                "трек",
                "квитанц",
                "номер",
            ]
            .iter()
            .any(|p| w.starts_with(p))
        });
    Facts {
        context,
        company,
        personal,
        reference,
    }
}

pub(crate) fn detect(text: &str, tokens: &[Token], out: &mut Vec<Detection>) {
    for caps in PASSPORT_SERIES_NUMBER.captures_iter(text) {
        let (Some(series), Some(number)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        if text[number.end()..].starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let digits = format!("{}{}", only_digits(series.as_str()), number.as_str());
        out.push(
            Detection::new(PiiKind::Passport, series.start(), number.end(), 0.95)
                .with_normalized(digits),
        );
    }
    for (run_start, run_end) in runs(text, tokens) {
        let groups = groups(text, run_start, run_end);
        let digit_count: usize = groups.iter().map(|(start, end)| end - start).sum();
        // Every document number accepted by `classify` has at least 10 digits.
        if digit_count < MIN_DOCUMENT_DIGITS || glued_to_word(text, run_start, run_end) {
            continue;
        }
        let facts = facts(text, tokens, run_start);
        let all_digits = only_digits(&text[run_start..run_end]);
        // Try the whole run first, then shorter prefixes, so a document number followed by
        // another number on the same line is still found.
        let mut prefix_digits = digit_count;
        for k in (1..=groups.len()).rev() {
            if prefix_digits < MIN_DOCUMENT_DIGITS {
                break;
            }
            let end = groups[k - 1].1;
            let digits = &all_digits[..prefix_digits];
            let shape = &text[run_start..end];
            if let Some((kind, confidence)) = classify(digits, shape, &facts) {
                out.push(
                    Detection::new(kind, run_start, end, confidence)
                        .with_normalized(digits.to_string()),
                );
                break;
            }
            prefix_digits -= groups[k - 1].1 - groups[k - 1].0;
        }
    }
}

/// Returns the byte ranges of the [`RUN`] matches in `text`. A hand-written scanner finds the
/// same ranges several times faster than the regex. Texts that may contain non-ASCII
/// digits, which `\d` also matches, are searched with the regex.
fn runs(text: &str, tokens: &[Token]) -> Vec<(usize, usize)> {
    if may_have_non_ascii_digit(text) {
        return RUN.find_iter(text).map(|m| (m.start(), m.end())).collect();
    }
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut searched_to = 0;
    // A match starts at the first digit of a number token that no earlier match covers.
    for token in tokens {
        if token.kind != TokenKind::Number || token.start < searched_to {
            continue;
        }
        let at = token.start;
        let mut end = at + 1;
        loop {
            if is_ascii_digit_at(bytes, end) {
                end += 1;
                continue;
            }
            let separator = match bytes.get(end) {
                Some(b'-') => Some(1),
                _ => space_width(bytes, end),
            };
            match separator {
                Some(width) if is_ascii_digit_at(bytes, end + width) => end += width + 1,
                _ => break,
            }
        }
        found.push((at, end));
        searched_to = end;
    }
    found
}

fn glued_to_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    if glued(before) || glued(after) {
        return true;
    }
    // Parts of UUIDs and codes such as "a716-446655440000" or "2024-0214-117".
    let dash_glued_before = before == Some('-') && glued(text[..start - 1].chars().next_back());
    let dash_glued_after = after == Some('-') && glued(text[end + 1..].chars().next());
    dash_glued_before || dash_glued_after
}

fn groups(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    while i < end {
        if bytes[i].is_ascii_digit() {
            let s = i;
            while i < end && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

fn only_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn classify(digits: &str, shape: &str, facts: &Facts) -> Option<(PiiKind, f32)> {
    let len = digits.len();
    match facts.context {
        Context::Snils if len == 11 => {
            return Some((PiiKind::Snils, if snils_valid(digits) { 0.98 } else { 0.8 }));
        }
        Context::Inn if len == 12 && !facts.company => {
            return Some((PiiKind::Inn, if inn_valid(digits) { 0.97 } else { 0.75 }));
        }
        Context::Inn if len == 10 && facts.personal && !facts.company => {
            // NOTE: a 10-digit INN belongs to an organisation; it is redacted only when the
            // writer calls it their own.
            return Some((PiiKind::Inn, 0.6));
        }
        Context::Inn if facts.company => return None,
        Context::Passport if len == 10 => return Some((PiiKind::Passport, 0.95)),
        Context::Oms if len == 16 => return Some((PiiKind::Oms, 0.95)),
        Context::Card if (13..=19).contains(&len) => {
            return Some((PiiKind::Card, if luhn_valid(digits) { 0.98 } else { 0.75 }));
        }
        _ => {}
    }
    if facts.reference || facts.company {
        return None;
    }
    if (13..=19).contains(&len) && luhn_valid(digits) && card_shaped(shape) {
        return Some((PiiKind::Card, 0.85));
    }
    if len == 11 && snils_valid(digits) {
        // A formatted SNILS is distinctive; bare 11 digits lose to a valid phone.
        let formatted = shape.len() == 14 && shape.as_bytes()[3] == b'-';
        return Some((PiiKind::Snils, if formatted { 0.9 } else { 0.6 }));
    }
    if len == 12 && inn_valid(digits) && !shape.contains([' ', '-']) {
        return Some((PiiKind::Inn, 0.7));
    }
    None
}

/// Cards are written as one block or in groups of four (Amex: 4-6-5).
fn card_shaped(shape: &str) -> bool {
    let parts: Vec<usize> = shape
        .split([' ', '-', '\u{a0}'])
        .map(str::len)
        .filter(|&n| n > 0)
        .collect();
    parts.len() == 1 || parts[..parts.len() - 1].iter().all(|&n| n == 4) || parts == [4, 6, 5]
}

pub(crate) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// SNILS control number: the first nine digits weighted 9..1, sum reduced mod 101 and 100 → 0.
pub(crate) fn snils_valid(digits: &str) -> bool {
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    if d.len() != 11 {
        return false;
    }
    let sum: u32 = d[..9].iter().zip((1..=9).rev()).map(|(x, w)| x * w).sum();
    let control = match sum {
        0..=99 => sum,
        100 | 101 => 0,
        _ => {
            let r = sum % 101;
            if r == 100 { 0 } else { r }
        }
    };
    control == d[9] * 10 + d[10]
}

fn weighted_check(d: &[u32], weights: &[u32]) -> u32 {
    let sum: u32 = d.iter().zip(weights).map(|(x, w)| x * w).sum();
    sum % 11 % 10
}

/// INN checksums: one control digit for 10 digits (organisations), two for 12 (individuals).
pub(crate) fn inn_valid(digits: &str) -> bool {
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    match d.len() {
        10 => weighted_check(&d[..9], &[2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[9],
        12 => {
            weighted_check(&d[..10], &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[10]
                && weighted_check(&d[..11], &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[11]
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn found(text: &str) -> Vec<(PiiKind, String)> {
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
        let mut out = Vec::new();
        detect(text, &tokens, &mut out);
        out.into_iter()
            .map(|d| (d.kind, text[d.start..d.end].to_string()))
            .collect()
    }

    #[test]
    fn run_scanner_matches_regex() {
        let alphabet: Vec<char> = "0123456789 \t\u{a0}-.+a٣".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..state % 24 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let expected: Vec<(usize, usize)> =
                RUN.find_iter(&text).map(|m| (m.start(), m.end())).collect();
            let mut buffer = String::new();
            let tokens = tokenize(&text, &mut buffer);
            assert_eq!(runs(&text, &tokens), expected, "{text:?}");
        }
    }

    #[test]
    fn checksums() {
        assert!(luhn_valid("2202202919821599"));
        assert!(!luhn_valid("5536915098195733"));
        assert!(snils_valid("86411725203"));
        assert!(!snils_valid("95684814413"));
        assert!(inn_valid("7707083893"));
        assert!(inn_valid("500100732259"));
        assert!(!inn_valid("500100732250"));
    }

    #[test]
    fn document_word_overrides_checksum() {
        assert_eq!(
            found("СНИЛС 956-848-144 13"),
            vec![(PiiKind::Snils, "956-848-144 13".into())]
        );
        assert_eq!(
            found("верните на карту 5536 9150 9819 5733"),
            vec![(PiiKind::Card, "5536 9150 9819 5733".into())]
        );
    }

    #[test]
    fn failing_reference_without_context_is_left() {
        assert!(found("платёж 5536 9150 9819 5733 прошёл").is_empty());
        assert!(found("код 5536 9150 9819 5733").is_empty());
    }

    #[test]
    fn company_inn_left_personal_inn_redacted() {
        assert!(found("ИНН ООО Ромашка 7707083893").is_empty());
        assert!(found("от ООО «СтройЛайн-Уфа», ИНН 0277376719").is_empty());
        assert_eq!(
            found("мой ИНН 500100732259"),
            vec![(PiiKind::Inn, "500100732259".into())]
        );
    }

    #[test]
    fn passport_and_oms_need_context() {
        assert_eq!(
            found("паспорт 45 12 345678"),
            vec![(PiiKind::Passport, "45 12 345678".into())]
        );
        assert_eq!(
            found("паспорт 4512 345678"),
            vec![(PiiKind::Passport, "4512 345678".into())]
        );
        assert_eq!(
            found("серия 4512 номер 345678"),
            vec![(PiiKind::Passport, "4512 номер 345678".into())]
        );
        assert_eq!(
            found("полис ОМС 0248 3285 8409 0383"),
            vec![(PiiKind::Oms, "0248 3285 8409 0383".into())]
        );
        assert!(found("4512 345678").is_empty());
    }

    #[test]
    fn order_number_and_uuid_are_left() {
        assert!(found("заказ № 4829103").is_empty());
        assert!(found("id 550e8400-e29b-41d4-a716-446655440000").is_empty());
    }
}
