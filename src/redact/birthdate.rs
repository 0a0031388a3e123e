//! Birth dates: a date or a year next to a birth marker ("д.р.", "г.р.", "родилась", "ДР").
//! Dates without such a marker are appointment dates and are left alone.

use super::{Detection, PiiKind};
use regex::Regex;
use std::sync::LazyLock;

/// Dates as 14.07.1995, 14/07/95, 01.04 (no year), or "7 февраля 1979".
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:(\d{1,2})[./\-](\d{1,2})(?:[./\-](\d{4}|\d{2}))?|\d{1,2}\s+(?:январ[яь]|феврал[яь]|марта?|апрел[яь]|ма[яй]|июн[яь]|июл[яь]|августа?|сентябр[яь]|октябр[яь]|ноябр[яь]|декабр[яь])(?:\s+\d{4})?|(?:19|20)\d{2})",
    )
    .expect("static regex")
});

/// A birth marker at the end of the text before a date ("д.р. ", "дата рождения: ").
static MARKER_BEFORE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^\p{L}\p{N}])(?:д\.?\s?р\.?|др|дата\s+рождения|рожд\p{L}*|родил(?:ся|ась|ись)?|г\.?\s?р\.?|born(?:\s+on)?|dob|date\s+of\s+birth|birth\s*date)\s*(?:[:\-–—]\s*)?(?:в\s+|on\s+)?$")
        .expect("static regex")
});

/// A birth marker right after a date ("1956 г.р.", "1990 года рождения").
static MARKER_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*,?\s*(?:г\.?\s?р\.?|г\.\s?рожд|года?\s+рождения|гр(?:[^\p{L}]|$))")
        .expect("static regex")
});

pub(crate) fn detect(text: &str, out: &mut Vec<Detection>) {
    for m in DATE.find_iter(text) {
        // Word edges are checked here because a Unicode \b slows the regex down.
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            continue;
        }
        if let Some((day, month)) = day_and_month(m.as_str()) {
            let day: u32 = day.parse().unwrap_or(0);
            let month: u32 = month.parse().unwrap_or(0);
            if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
                continue;
            }
        }
        let head_start = floor_char_boundary(text, m.start().saturating_sub(40));
        let head = &text[head_start..m.start()];
        let tail_end = ceil_char_boundary(text, (m.end() + 30).min(text.len()));
        let tail = &text[m.end()..tail_end];
        let before = MARKER_BEFORE.is_match(head);
        let after = MARKER_AFTER.is_match(tail);
        if before || after {
            out.push(Detection::new(PiiKind::Birthdate, m.start(), m.end(), 0.9));
        }
    }
}

/// Returns the day and month digits of a [`DATE`] match written with digits only
/// ("14.07.1995", "01.04"), or None for the other forms. The digit forms are the only ones
/// with a `.`, `/` or `-`, and their day and month contain none, so splitting there gives
/// the same groups as the regex captures without running the slower capture search.
fn day_and_month(date: &str) -> Option<(&str, &str)> {
    let (day, rest) = date.split_once(['.', '/', '-'])?;
    let month = rest.split(['.', '/', '-']).next().unwrap_or(rest);
    Some((day, month))
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        detect(text, &mut out);
        out.into_iter()
            .map(|d| text[d.start..d.end].to_string())
            .collect()
    }

    #[test]
    fn birth_markers() {
        assert_eq!(found("Анна, д.р. 14.07.1995, тел"), vec!["14.07.1995"]);
        assert_eq!(found("12.03.1956 г.р., полис"), vec!["12.03.1956"]);
        assert_eq!(found("д.р. 7 февраля 1979"), vec!["7 февраля 1979"]);
        assert_eq!(found("ДР 01.04"), vec!["01.04"]);
        assert_eq!(found("1990 г.р."), vec!["1990"]);
        assert_eq!(found("родилась 3.9.2015"), vec!["3.9.2015"]);
        assert_eq!(found("дата рождения: 22.11.1987"), vec!["22.11.1987"]);
    }

    #[test]
    fn appointment_dates_and_car_years_are_left() {
        assert!(found("в субботу 16.03 часов в 12").is_empty());
        assert!(found("16.03.2024 в 12:30").is_empty());
        assert!(found("Solaris 2019 г.в.").is_empty());
    }
}
