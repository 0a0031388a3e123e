//! Puts placeholders back into text that a person wrote with the values filled in, such as
//! a draft that staff edited after seeing it with the client's name.

use super::Mapping;

/// Replaces every known value of `mapping` (each entry's value and every occurrence's
/// original text) in `text` with its placeholder. Longer values go first, so that a phone
/// written in full is not split by a shorter value inside it. A match is replaced only
/// where it does not continue a word, so the name "Анна" leaves "Аннабель" alone.
///
/// NOTE: values the mapping does not know, such as a new phone typed by staff, stay as
/// typed and so are stored in clear.
pub fn replace_known(mapping: &Mapping, text: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = mapping
        .entries
        .iter()
        .flat_map(|entry| {
            std::iter::once(entry.value.as_str())
                .chain(entry.occurrences.iter().map(String::as_str))
                .map(|value| (value, entry.placeholder.as_str()))
        })
        .filter(|(value, _)| !value.trim().is_empty())
        .collect();
    pairs.sort_by_key(|(value, _)| std::cmp::Reverse(value.chars().count()));
    pairs.dedup_by_key(|(value, _)| *value);
    let mut out = text.to_string();
    for (value, placeholder) in pairs {
        out = replace_whole(&out, value, placeholder);
    }
    out
}

/// Replaces the matches of `value` in `text` that neither start right after nor end right
/// before a letter or digit.
fn replace_whole(text: &str, value: &str, placeholder: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(value) {
        if at < copied {
            continue;
        }
        let before = text[..at].chars().next_back();
        let after = text[at + value.len()..].chars().next();
        let value_starts_word = value.chars().next().is_some_and(char::is_alphanumeric);
        let value_ends_word = value.chars().next_back().is_some_and(char::is_alphanumeric);
        if (value_starts_word && is_word(before)) || (value_ends_word && is_word(after)) {
            continue;
        }
        out.push_str(&text[copied..at]);
        out.push_str(placeholder);
        copied = at + value.len();
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{MappingEntry, PiiKind};

    fn mapping() -> Mapping {
        Mapping {
            entries: vec![
                MappingEntry {
                    placeholder: "[PERSON_1]".into(),
                    kind: PiiKind::Person,
                    value: "Анна".into(),
                    occurrences: vec!["Анна".into(), "Анны".into()],
                },
                MappingEntry {
                    placeholder: "[PHONE_1]".into(),
                    kind: PiiKind::Phone,
                    value: "+7 917 555-12-34".into(),
                    occurrences: vec!["89175551234".into()],
                },
            ],
        }
    }

    #[test]
    fn known_values_become_placeholders() {
        let text = "Анна, перезвоним на +7 917 555-12-34 или 89175551234.";
        assert_eq!(
            replace_known(&mapping(), text),
            "[PERSON_1], перезвоним на [PHONE_1] или [PHONE_1]."
        );
    }

    #[test]
    fn longer_words_are_left_alone() {
        let text = "Аннабель и Анна";
        assert_eq!(replace_known(&mapping(), text), "Аннабель и [PERSON_1]");
    }

    #[test]
    fn restore_then_replace_round_trips() {
        let draft = "Здравствуйте, [PERSON_1]! Позвоним на [PHONE_1].";
        let shown = crate::redact::restore_draft(&mapping(), draft);
        assert_eq!(replace_known(&mapping(), &shown), draft);
    }
}
