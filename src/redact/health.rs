//! Health words (special category data): symptoms, diagnoses, pregnancy and cycle,
//! medication, allergies. They are flagged, not redacted.
//!
//! Patterns come from `data/redact/health_terms.txt`. Word patterns ending in `*` match a
//! prefix, so inflected forms ("болит", "аллергией") match one stem. Patterns are indexed by
//! the first two letters of their first word, so each token is checked against a few
//! patterns only.

use super::HealthHit;
use super::text::{Token, WordMap};
use std::sync::LazyLock;

const HEALTH_TERMS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/redact/health_terms.txt"
));

#[derive(Debug)]
enum WordPattern {
    Exact(String),
    Prefix(String),
    Any,
}

impl WordPattern {
    fn parse(word: &str) -> WordPattern {
        if word == "*" {
            WordPattern::Any
        } else if let Some(prefix) = word.strip_suffix('*') {
            WordPattern::Prefix(super::text::fold(prefix))
        } else {
            WordPattern::Exact(super::text::fold(word))
        }
    }

    fn matches(&self, word: &str) -> bool {
        match self {
            WordPattern::Exact(w) => word == w,
            WordPattern::Prefix(p) => word.starts_with(p.as_str()),
            WordPattern::Any => true,
        }
    }

    fn text(&self) -> &str {
        match self {
            WordPattern::Exact(w) | WordPattern::Prefix(w) => w,
            WordPattern::Any => "",
        }
    }
}

#[derive(Debug)]
struct Pattern {
    /// None for an exclusion.
    category: Option<&'static str>,
    words: Vec<WordPattern>,
}

struct Index {
    patterns: Vec<Pattern>,
    /// Pattern indices by the first two letters of the first word, packed by [`first_two`].
    by_first_letters: WordMap<u64, Vec<usize>>,
}

fn category_name(name: &str) -> Option<&'static str> {
    ["symptom", "diagnosis", "pregnancy", "medication", "allergy"]
        .into_iter()
        .find(|c| *c == name)
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut patterns = Vec::new();
    for line in HEALTH_TERMS.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (category, rest) = match line.strip_prefix('!') {
            Some(rest) => (None, rest),
            None => {
                let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
                match category_name(name) {
                    Some(category) => (Some(category), rest),
                    None => continue,
                }
            }
        };
        let words: Vec<WordPattern> = rest.split_whitespace().map(WordPattern::parse).collect();
        if words.first().is_some_and(|w| w.text().chars().count() >= 2) {
            patterns.push(Pattern { category, words });
        }
    }
    // Exclusions first, then longer patterns, so the first match at a token is the best.
    patterns.sort_by_key(|p| (p.category.is_some(), std::cmp::Reverse(p.words.len())));
    let mut by_first_letters: WordMap<u64, Vec<usize>> = WordMap::default();
    for (index, pattern) in patterns.iter().enumerate() {
        if let Some(key) = first_two(pattern.words[0].text()) {
            by_first_letters.entry(key).or_default().push(index);
        }
    }
    Index {
        patterns,
        by_first_letters,
    }
});

/// Packs the first two chars of `word` into one integer key, which hashes faster than a
/// pair of chars.
fn first_two(word: &str) -> Option<u64> {
    let mut chars = word.chars();
    let first = chars.next()?;
    let second = chars.next()?;
    Some((u64::from(first) << 32) | u64::from(second))
}

pub(crate) fn detect(tokens: &[Token]) -> Vec<HealthHit> {
    let index = &*INDEX;
    let mut hits = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(candidates) =
            first_two(tokens[i].folded).and_then(|k| index.by_first_letters.get(&k))
        else {
            i += 1;
            continue;
        };
        let mut next = i + 1;
        for &p in candidates {
            let pattern = &index.patterns[p];
            let n = pattern.words.len();
            if i + n > tokens.len() {
                continue;
            }
            let matched = pattern
                .words
                .iter()
                .zip(&tokens[i..i + n])
                .all(|(w, t)| w.matches(t.folded));
            if !matched {
                continue;
            }
            match pattern.category {
                // An exclusion ("больше", "температура воздуха") consumes the tokens.
                None => next = i + n,
                Some(category) => {
                    hits.push(HealthHit {
                        start: tokens[i].start,
                        end: tokens[i + n - 1].end,
                        category,
                    });
                    next = i + n;
                }
            }
            break;
        }
        i = next;
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn categories(text: &str) -> Vec<&'static str> {
        let mut buffer = String::new();
        detect(&tokenize(text, &mut buffer))
            .into_iter()
            .map(|h| h.category)
            .collect()
    }

    #[test]
    fn inflected_forms_match() {
        assert_eq!(categories("сильно болит зуб"), vec!["symptom"]);
        assert_eq!(categories("у меня аллергия на лидокаин"), vec!["allergy"]);
        assert_eq!(categories("на 5 месяце беременности"), vec!["pregnancy"]);
        assert_eq!(categories("пью Роаккутан"), vec!["medication"]);
        assert_eq!(categories("лечилась (гастрит)"), vec!["diagnosis"]);
        assert_eq!(categories("срок 6 недель"), vec!["pregnancy"]);
        assert_eq!(categories("откололся передний зуб"), vec!["symptom"]);
    }

    #[test]
    fn cosmetic_services_are_not_health() {
        assert!(categories("маникюр и стрижка, потом чистка лица").is_empty());
        assert!(categories("больше не приду").is_empty());
        assert!(categories("профессиональная чистка зубов").is_empty());
    }

    #[test]
    fn dental_treatment_is_health() {
        assert_eq!(categories("удаление зуба мудрости"), vec!["diagnosis"]);
        assert_eq!(categories("лечение зуба"), vec!["diagnosis"]);
    }
}
