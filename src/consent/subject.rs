//! The subject of consent: the person a lead or a consent event is about, identified by a
//! normalised phone (E.164), e-mail (lower case) or messenger handle (lower case, no `@`).

use serde::{Deserialize, Serialize};

use crate::redact::{PiiKind, Span, normalize_phone};

/// The maximum length of an e-mail subject, in bytes.
const MAX_SUBJECT_BYTES: usize = 254;
/// The maximum length of a handle subject, in characters.
const MAX_HANDLE_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Phone,
    Email,
    Handle,
    /// A lead without contact details: its consent covers that lead alone, and the value is
    /// `CHANNEL/EXTERNAL_ID`.
    Lead,
}

impl SubjectKind {
    /// The kinds of a contact value: every kind but `Lead`.
    pub const CONTACT: [SubjectKind; 3] =
        [SubjectKind::Phone, SubjectKind::Email, SubjectKind::Handle];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Phone => "phone",
            SubjectKind::Email => "email",
            SubjectKind::Handle => "handle",
            SubjectKind::Lead => "lead",
        }
    }

    pub fn parse(name: &str) -> Option<SubjectKind> {
        [
            SubjectKind::Phone,
            SubjectKind::Email,
            SubjectKind::Handle,
            SubjectKind::Lead,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    /// Returns the redactor's placeholder kind for values of this kind; `None` for `Lead`.
    pub fn pii_kind(self) -> Option<PiiKind> {
        match self {
            SubjectKind::Phone => Some(PiiKind::Phone),
            SubjectKind::Email => Some(PiiKind::Email),
            SubjectKind::Handle => Some(PiiKind::Handle),
            SubjectKind::Lead => None,
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

/// A subject value that cannot be normalised; the message names the field, not the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSubject {
    pub message: String,
}

impl Subject {
    /// Normalises a phone number to E.164.
    ///
    /// # Errors
    /// When the `phonenumber` crate finds the number invalid.
    pub fn phone(raw: &str, field: &str) -> Result<Subject, InvalidSubject> {
        let value = normalize_phone(raw.trim()).ok_or_else(|| InvalidSubject {
            message: format!(
                "`{field}` is not a valid phone number; send it in international form, \
                 such as +79170000001"
            ),
        })?;
        Ok(Subject {
            kind: SubjectKind::Phone,
            value,
        })
    }

    /// Normalises an e-mail address to lower case.
    ///
    /// # Errors
    /// When the address lacks a local part or a domain with a dot, contains whitespace, or
    /// is longer than 254 bytes.
    pub fn email(raw: &str, field: &str) -> Result<Subject, InvalidSubject> {
        let value = raw.trim().to_lowercase();
        let valid = value.len() <= MAX_SUBJECT_BYTES
            && !value.chars().any(char::is_whitespace)
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if !valid {
            return Err(InvalidSubject {
                message: format!("`{field}` is not a valid e-mail address"),
            });
        }
        Ok(Subject {
            kind: SubjectKind::Email,
            value,
        })
    }

    /// Normalises a messenger handle: lower case, without the leading `@`. A profile link
    /// such as `t.me/name` gives its last path segment.
    ///
    /// # Errors
    /// When the handle is empty, longer than 64 characters, or has characters other than
    /// Latin letters, digits, `_` and `.`.
    pub fn handle(raw: &str, field: &str) -> Result<Subject, InvalidSubject> {
        let trimmed = raw.trim().trim_end_matches('/');
        let last_segment = trimmed.rsplit('/').next().unwrap_or(trimmed);
        let value = last_segment.trim_start_matches('@').to_lowercase();
        let valid = !value.is_empty()
            && value.chars().count() <= MAX_HANDLE_CHARS
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'));
        if !valid {
            return Err(InvalidSubject {
                message: format!(
                    "`{field}` is not a valid handle; send the user name of up to \
                     {MAX_HANDLE_CHARS} Latin letters, digits, `_` or `.`, with or without `@`"
                ),
            });
        }
        Ok(Subject {
            kind: SubjectKind::Handle,
            value,
        })
    }

    /// Normalises `raw` as a value of `kind`; `field` names the value in the error.
    ///
    /// # Errors
    /// As [`Subject::phone`], [`Subject::email`] and [`Subject::handle`], and always for
    /// `SubjectKind::Lead`, which has no contact value.
    pub fn new(kind: SubjectKind, raw: &str, field: &str) -> Result<Subject, InvalidSubject> {
        match kind {
            SubjectKind::Phone => Subject::phone(raw, field),
            SubjectKind::Email => Subject::email(raw, field),
            SubjectKind::Handle => Subject::handle(raw, field),
            SubjectKind::Lead => Err(InvalidSubject {
                message: format!("`{field}` must be a phone number, an e-mail or a handle"),
            }),
        }
    }

    /// Returns the subject of a lead without contact details, whose consent covers that
    /// lead alone.
    pub fn lead(channel: &str, external_id: &str) -> Subject {
        Subject {
            kind: SubjectKind::Lead,
            value: format!("{channel}/{external_id}"),
        }
    }
}

/// Returns the normalised form of `raw` as a value of `kind`, or `None` when it is not a
/// valid one.
pub fn normalize(kind: SubjectKind, raw: &str) -> Option<String> {
    Subject::new(kind, raw, "value")
        .ok()
        .map(|subject| subject.value)
}

/// Contact fields of a lead that can identify its subject.
#[derive(Default, Clone, Copy)]
pub struct ContactFields<'a> {
    pub phone: Option<&'a str>,
    pub email: Option<&'a str>,
    pub handle: Option<&'a str>,
}

/// Finds the subject of a lead: the first of `contact.phone`, `contact.email` and
/// `contact.handle`, then the first phone, e-mail or handle the redactor found in the text.
/// Returns `Ok(None)` when there is none.
///
/// # Errors
/// When the chosen contact field cannot be normalised. Values found in the text that
/// cannot be normalised are skipped.
pub fn subject_of_lead(
    contact: ContactFields<'_>,
    spans: &[Span],
) -> Result<Option<Subject>, InvalidSubject> {
    if let Some(phone) = contact.phone {
        return Subject::phone(phone, "contact.phone").map(Some);
    }
    if let Some(email) = contact.email {
        return Subject::email(email, "contact.email").map(Some);
    }
    if let Some(handle) = contact.handle {
        return Subject::handle(handle, "contact.handle").map(Some);
    }
    let found = |kind: PiiKind| {
        spans
            .iter()
            .filter(move |span| span.kind == kind)
            .filter_map(|span| span.normalized.as_deref())
    };
    // A 7-digit city number without its area code is not E.164, so it names no subject.
    let phone = found(PiiKind::Phone)
        .find(|value| value.starts_with('+'))
        .and_then(|value| Subject::phone(value, "text").ok());
    let email = || found(PiiKind::Email).find_map(|value| Subject::email(value, "text").ok());
    let handle = || found(PiiKind::Handle).find_map(|value| Subject::handle(value, "text").ok());
    Ok(phone.or_else(email).or_else(handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_normalised_to_e164() {
        for raw in [
            "+7 917 000-00-01",
            "8 (917) 000-00-01",
            "89170000001",
            "9170000001",
        ] {
            let subject = Subject::phone(raw, "phone").unwrap();
            assert_eq!(subject.value, "+79170000001", "{raw}");
        }
        let error = Subject::phone("12345", "subject.phone").unwrap_err();
        assert!(error.message.contains("subject.phone"), "{error}");
        assert!(
            !error.message.contains("12345"),
            "the message quotes the value"
        );
    }

    #[test]
    fn email_and_handle_lower_case() {
        let email = Subject::email(" Anna.Petrova@Mail.RU ", "email").unwrap();
        assert_eq!(email.value, "anna.petrova@mail.ru");
        for bad in [
            "anna",
            "anna@",
            "@mail.ru",
            "anna@mail",
            "an na@mail.ru",
            "a@b@c.ru",
        ] {
            assert!(Subject::email(bad, "email").is_err(), "{bad}");
        }
        for raw in [
            "@Anna_P",
            "anna_p",
            "https://t.me/Anna_P",
            "instagram.com/anna_p/",
        ] {
            assert_eq!(
                Subject::handle(raw, "handle").unwrap().value,
                "anna_p",
                "{raw}"
            );
        }
        for bad in ["@", "анна", "anna p"] {
            assert!(Subject::handle(bad, "handle").is_err(), "{bad}");
        }
    }

    #[test]
    fn new_dispatches_by_kind() {
        let phone = Subject::new(SubjectKind::Phone, "8 (917) 000-00-01", "phone").unwrap();
        assert_eq!(phone.value, "+79170000001");
        assert_eq!(
            normalize(SubjectKind::Handle, "https://t.me/Anna_P/").as_deref(),
            Some("anna_p")
        );
        assert_eq!(normalize(SubjectKind::Email, "anna@mail"), None);
        let lead = Subject::new(SubjectKind::Lead, "web/1", "subject").unwrap_err();
        assert!(lead.message.contains("subject"), "{lead}");
        for kind in SubjectKind::CONTACT {
            assert!(kind.pii_kind().is_some(), "{kind:?}");
        }
        assert_eq!(SubjectKind::Lead.pii_kind(), None);
    }

    #[test]
    fn lead_subject_order() {
        let contact = ContactFields {
            phone: None,
            email: Some("A@B.ru"),
            handle: Some("@anna"),
        };
        let subject = subject_of_lead(contact, &[]).unwrap().unwrap();
        assert_eq!(subject.kind, SubjectKind::Email);

        let text = "пишите на anna@mail.ru или @anna_p, тел. +7 917 000-00-01";
        let redaction = crate::redact::redact(text);
        let subject = subject_of_lead(ContactFields::default(), &redaction.spans)
            .unwrap()
            .unwrap();
        assert_eq!(subject.kind, SubjectKind::Phone);
        assert_eq!(subject.value, "+79170000001");

        let redaction = crate::redact::redact("пишите на Anna@Mail.ru");
        let subject = subject_of_lead(ContactFields::default(), &redaction.spans)
            .unwrap()
            .unwrap();
        assert_eq!(subject.value, "anna@mail.ru");

        let none = subject_of_lead(ContactFields::default(), &[]).unwrap();
        assert!(none.is_none());
        let bad = ContactFields {
            phone: Some("12"),
            ..ContactFields::default()
        };
        assert!(subject_of_lead(bad, &[]).is_err());
    }
}
