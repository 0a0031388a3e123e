//! E-mail addresses (Cyrillic domains included) and messenger or Instagram handles.

use super::{Detection, PiiKind};
use regex::Regex;
use std::sync::LazyLock;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\p{L}\p{N}_%+\-]+(?:\.[\p{L}\p{N}_%+\-]+)*@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}")
        .expect("static regex")
});

/// "@name" as used by Telegram and Instagram; the caller rejects e-mail local parts.
static HANDLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"@[A-Za-z0-9_](?:[A-Za-z0-9_.]*[A-Za-z0-9_])?").expect("static regex")
});

/// Profile links: t.me/name, instagram.com/name, vk.com/name.
static PROFILE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|instagram\.com|instagr\.am|vk\.com)/[A-Za-z0-9_.]{3,}")
        .expect("static regex")
});

pub(crate) fn detect(text: &str, out: &mut Vec<Detection>) {
    if !text.as_bytes().contains(&b'@') && !text.as_bytes().contains(&b'/') {
        return;
    }
    for m in EMAIL.find_iter(text) {
        out.push(
            Detection::new(PiiKind::Email, m.start(), m.end(), 0.97)
                .with_normalized(m.as_str().to_lowercase()),
        );
    }
    // NOTE: an advertiser's own handle is redacted too, because nothing here tells business
    // handles from private ones.
    for m in HANDLE.find_iter(text) {
        let before = text[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
            continue;
        }
        let after = text[m.end()..].chars().next();
        // "@name@host" or "@name.рф" belong to an e-mail or a domain, not a handle.
        if after.is_some_and(|c| c == '@' || c.is_alphanumeric()) {
            continue;
        }
        if m.as_str().len() < 4 {
            continue;
        }
        out.push(
            Detection::new(PiiKind::Handle, m.start(), m.end(), 0.9)
                .with_normalized(m.as_str().to_lowercase()),
        );
    }
    for m in PROFILE_LINK.find_iter(text) {
        if text[..m.start()].ends_with(|c: char| c.is_alphanumeric()) {
            continue;
        }
        out.push(
            Detection::new(PiiKind::Handle, m.start(), m.end(), 0.85)
                .with_normalized(m.as_str().to_lowercase()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(PiiKind, String)> {
        let mut out = Vec::new();
        detect(text, &mut out);
        out.into_iter()
            .map(|d| (d.kind, text[d.start..d.end].to_string()))
            .collect()
    }

    #[test]
    fn emails_latin_and_cyrillic() {
        assert_eq!(
            found("почта t.akhmetzyanov84@mail.ru."),
            vec![(PiiKind::Email, "t.akhmetzyanov84@mail.ru".into())]
        );
        assert_eq!(
            found("пишите иван@почта.рф"),
            vec![(PiiKind::Email, "иван@почта.рф".into())]
        );
    }

    #[test]
    fn handles_are_not_emails() {
        assert_eq!(
            found("Алина @alina_ufa_02"),
            vec![(PiiKind::Handle, "@alina_ufa_02".into())]
        );
        assert!(found("a@b.co").iter().all(|(k, _)| *k == PiiKind::Email));
        assert_eq!(
            found("инста instagram.com/nails.by.kamila"),
            vec![(PiiKind::Handle, "instagram.com/nails.by.kamila".into())]
        );
    }
}
