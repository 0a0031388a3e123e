//! The data subject of an export or erase request: a phone (E.164), an e-mail address
//! (lower case) or a messenger handle (lower case, without `@`), normalised as the consent
//! log stores them.
//!
//! NOTE: the consent feature brings its own normaliser of the same rules; once both are
//! merged, one of them should call the other.

use crate::redact::{PiiKind, normalize_phone};

/// The maximum length of an e-mail address (RFC 5321).
const MAX_EMAIL_BYTES: usize = 254;
/// The maximum length of a handle; Telegram allows 32 and Instagram 30 characters.
const MAX_HANDLE_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Phone,
    Email,
    Handle,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 3] = [SubjectKind::Phone, SubjectKind::Email, SubjectKind::Handle];

    /// Returns the name stored in the database and used as a query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Phone => "phone",
            SubjectKind::Email => "email",
            SubjectKind::Handle => "handle",
        }
    }

    pub fn parse(name: &str) -> Option<SubjectKind> {
        SubjectKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Returns the redactor's placeholder kind for values of this kind.
    pub fn pii_kind(self) -> PiiKind {
        match self {
            SubjectKind::Phone => PiiKind::Phone,
            SubjectKind::Email => PiiKind::Email,
            SubjectKind::Handle => PiiKind::Handle,
        }
    }
}

/// A normalised subject. `Debug` shows the kind and length only, because the value is
/// personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: SubjectKind,
    pub value: String,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("kind", &self.kind)
            .field("bytes", &self.value.len())
            .finish()
    }
}

/// A value that cannot be normalised. The message names the kind, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {kind} is not valid: {hint}")]
pub struct InvalidSubject {
    pub kind: &'static str,
    pub hint: &'static str,
}

impl Subject {
    /// Normalises `raw` as a value of `kind`.
    ///
    /// # Errors
    /// When the phone number is invalid for the `phonenumber` crate, the e-mail address lacks
    /// a local part or a dotted domain, or the handle has characters other than Latin
    /// letters, digits, `_` and `.`.
    pub fn new(kind: SubjectKind, raw: &str) -> Result<Subject, InvalidSubject> {
        let value = normalize(kind, raw).ok_or(InvalidSubject {
            kind: kind.as_str(),
            hint: match kind {
                SubjectKind::Phone => "send it in international form, such as +79170000001",
                SubjectKind::Email => "send an address such as name@example.ru",
                SubjectKind::Handle => {
                    "send the user name of Latin letters, digits, `_` or `.`, with or without `@`"
                }
            },
        })?;
        Ok(Subject { kind, value })
    }
}

/// Returns the normalised form of `raw`, or `None` when it is not a valid value of `kind`.
pub fn normalize(kind: SubjectKind, raw: &str) -> Option<String> {
    let raw = raw.trim();
    match kind {
        SubjectKind::Phone => normalize_phone(raw),
        SubjectKind::Email => {
            let value = raw.to_lowercase();
            let (local, domain) = value.split_once('@')?;
            let valid = value.len() <= MAX_EMAIL_BYTES
                && !value.chars().any(char::is_whitespace)
                && !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.');
            valid.then_some(value)
        }
        SubjectKind::Handle => {
            // A profile link such as t.me/name gives its last path segment.
            let trimmed = raw.trim_end_matches('/');
            let segment = trimmed.rsplit('/').next().unwrap_or(trimmed);
            let value = segment.trim_start_matches('@').to_lowercase();
            let valid = !value.is_empty()
                && value.chars().count() <= MAX_HANDLE_CHARS
                && value.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.')
                });
            valid.then_some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_forms_normalise_alike() {
        for raw in [
            "+7 917 000-00-01",
            "8 (917) 000-00-01",
            "89170000001",
            "9170000001",
        ] {
            let subject = Subject::new(SubjectKind::Phone, raw).unwrap();
            assert_eq!(subject.value, "+79170000001", "{raw}");
        }
        let error = Subject::new(SubjectKind::Phone, "12345").unwrap_err();
        assert!(
            !error.to_string().contains("12345"),
            "the error quotes the value"
        );
    }

    #[test]
    fn email_and_handle_lower_case() {
        let email = Subject::new(SubjectKind::Email, " Anna.P@Mail.RU ").unwrap();
        assert_eq!(email.value, "anna.p@mail.ru");
        for bad in ["anna", "anna@", "@mail.ru", "anna@mail", "a b@mail.ru"] {
            assert!(Subject::new(SubjectKind::Email, bad).is_err(), "{bad}");
        }
        for raw in ["@Anna_P", "anna_p", "https://t.me/Anna_P/"] {
            let handle = Subject::new(SubjectKind::Handle, raw).unwrap();
            assert_eq!(handle.value, "anna_p", "{raw}");
        }
        assert!(Subject::new(SubjectKind::Handle, "@").is_err());
        assert!(Subject::new(SubjectKind::Handle, "анна").is_err());
    }
}
