//! Drafted replies: the response template for the lead's intent and service, rendered with
//! minijinja from a fixed set of variables, and checked so that it states no number the
//! catalog, the template or the message does not contain.
//!
//! Drafts stay in placeholder form (`[PERSON_1]`) until they are shown; the caller fills in
//! the values with `redact::restore_draft`.

pub mod templates;

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use serde_json::json;

use crate::config::Service;
use crate::store::TemplateRow;

const SHIPPED_TEMPLATES: &str = include_str!("../../prompts/templates.ru.toml");

/// The template kinds leadgate ships.
pub const KINDS: [&str; 10] = [
    "booking_reply",
    "price_reply",
    "reschedule_reply",
    "cancel_reply",
    "complaint_reply",
    "fallback",
    "greeting",
    "consent_request",
    "reminder_24h",
    "reminder_3h",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShippedFile {
    templates: Vec<ShippedTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShippedTemplate {
    kind: String,
    service: Option<String>,
    body: String,
}

/// Returns the shipped templates as (kind, service, body).
pub fn shipped_templates() -> Vec<(String, Option<String>, String)> {
    let file: ShippedFile = toml::from_str(SHIPPED_TEMPLATES)
        .expect("prompts/templates.ru.toml is valid and has only known keys");
    file.templates
        .into_iter()
        .map(|t| (t.kind, t.service, t.body))
        .collect()
}

/// Returns the template kind for an intent; spam gets no reply.
pub fn kind_for_intent(intent: &str) -> Option<&'static str> {
    match intent {
        "book_appointment" => Some("booking_reply"),
        "price_inquiry" => Some("price_reply"),
        "reschedule" => Some("reschedule_reply"),
        "cancel" => Some("cancel_reply"),
        "complaint" => Some("complaint_reply"),
        "spam" => None,
        _ => Some("fallback"),
    }
}

/// A rendered draft in placeholder form.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub text: String,
    pub template_kind: String,
    pub template_version: i64,
    pub template_service: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    #[error("no active template of kind `{kind}`; add one or restore the shipped templates")]
    MissingTemplate { kind: String },

    #[error("template `{kind}` version {version} does not render: {message}")]
    Render {
        kind: String,
        version: i64,
        message: String,
    },
}

/// Formats a price range the way drafts state it, such as "ориентировочно от 1 500 до
/// 4 000 ₽".
pub fn price_text(service: &Service) -> Option<String> {
    let group = |n: u32| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push('\u{a0}');
            }
            out.push(c);
        }
        out
    };
    match (service.price_from, service.price_to) {
        (Some(from), Some(to)) => Some(format!(
            "ориентировочно от {} до {} ₽",
            group(from),
            group(to)
        )),
        (Some(from), None) => Some(format!("ориентировочно от {} ₽", group(from))),
        _ => None,
    }
}

/// Picks the active template of `kind` for `service`: a service-specific one wins over
/// the general one, and the newest version wins.
fn pick<'a>(templates: &'a [TemplateRow], kind: &str, service: &str) -> Option<&'a TemplateRow> {
    let newest = |rows: Vec<&'a TemplateRow>| rows.into_iter().max_by_key(|t| t.version);
    let specific = templates
        .iter()
        .filter(|t| t.kind == kind && t.service.as_deref() == Some(service))
        .collect();
    newest(specific).or_else(|| {
        newest(
            templates
                .iter()
                .filter(|t| t.kind == kind && t.service.is_none())
                .collect(),
        )
    })
}

fn render(template: &TemplateRow, context: serde_json::Value) -> Result<String, DraftError> {
    let mut environment = Environment::new();
    // A variable the template uses but the context lacks is an error, not empty text.
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    let text = environment
        .render_str(&template.body, context)
        .map_err(|e| DraftError::Render {
            kind: template.kind.clone(),
            version: template.version,
            message: e.to_string(),
        })?;
    Ok(text.trim().to_string())
}

/// Drafts the reply for a qualified lead, or returns `None` for spam.
///
/// A draft that states a number not found in the catalog's price text, the template or
/// the message is replaced by the kind's template rendered without price and service.
///
/// # Errors
/// When no template of the needed kind is active, or a template does not render.
pub fn compose(
    templates: &[TemplateRow],
    intent: &str,
    service: &Service,
    name_placeholder: Option<&str>,
    redacted_message: &str,
) -> Result<Option<Draft>, DraftError> {
    let Some(kind) = kind_for_intent(intent) else {
        return Ok(None);
    };
    let template =
        pick(templates, kind, &service.id).ok_or_else(|| DraftError::MissingTemplate {
            kind: kind.to_string(),
        })?;
    let price = price_text(service).unwrap_or_default();
    let is_other = service.id == "other";
    let context = json!({
        "name": name_placeholder.unwrap_or_default(),
        "service_name": if is_other { "" } else { service.name.as_str() },
        "price": if is_other { "" } else { price.as_str() },
        "ask_for": service.ask_for,
    });
    let mut text = render(template, context)?;
    let allowed = format!("{price} {} {redacted_message}", template.body);
    if !numbers_allowed(&text, &allowed) {
        tracing::warn!(
            kind,
            version = template.version,
            "draft stated an unknown number; using the plain template"
        );
        let plain = json!({
            "name": name_placeholder.unwrap_or_default(),
            "service_name": "",
            "price": "",
            "ask_for": service.ask_for,
        });
        text = render(template, plain)?;
    }
    Ok(Some(Draft {
        text,
        template_kind: template.kind.clone(),
        template_version: template.version,
        template_service: template.service.clone(),
    }))
}

/// Returns the runs of digits in `text`, placeholders such as `[PERSON_1]` skipped.
fn digit_runs(text: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current = String::new();
    let mut in_placeholder = false;
    for c in text.chars() {
        match c {
            '[' => in_placeholder = true,
            ']' => in_placeholder = false,
            _ => {}
        }
        if c.is_ascii_digit() && !in_placeholder {
            current.push(c);
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Checks that every number in `draft` also occurs in `allowed_sources`.
pub fn numbers_allowed(draft: &str, allowed_sources: &str) -> bool {
    let allowed = digit_runs(allowed_sources);
    digit_runs(draft).iter().all(|run| allowed.contains(run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn templates() -> Vec<TemplateRow> {
        shipped_templates()
            .into_iter()
            .map(|(kind, service, body)| TemplateRow {
                kind,
                service,
                version: 1,
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_is_shipped_and_renders() {
        let settings = Settings::defaults();
        let service = settings.service("hair").unwrap();
        let rows = templates();
        for kind in KINDS {
            let template = pick(&rows, kind, "hair").unwrap_or_else(|| panic!("{kind} missing"));
            let context = json!({"name": "[PERSON_1]", "service_name": service.name,
                "price": "", "ask_for": service.ask_for});
            render(template, context).unwrap();
        }
    }

    #[test]
    fn price_reply_states_catalog_price() {
        let settings = Settings::defaults();
        let service = settings.service("nails").unwrap();
        let draft = compose(
            &templates(),
            "price_inquiry",
            service,
            Some("[PERSON_1]"),
            "цена?",
        )
        .unwrap()
        .unwrap();
        assert!(draft.text.contains("ориентировочно"), "{}", draft.text);
        assert!(draft.text.contains("[PERSON_1]"), "{}", draft.text);
        assert_eq!(draft.template_kind, "price_reply");
    }

    #[test]
    fn spam_gets_no_draft() {
        let settings = Settings::defaults();
        let service = settings.service("other").unwrap();
        assert_eq!(
            compose(&templates(), "spam", service, None, "").unwrap(),
            None
        );
    }

    #[test]
    fn unknown_number_is_rejected() {
        assert!(numbers_allowed("в 14:00", "запись на 14:00"));
        assert!(!numbers_allowed("цена 999 ₽", "от 1 500 ₽"));
        assert!(numbers_allowed("Здравствуйте, [PERSON_1]!", ""));
    }
}
