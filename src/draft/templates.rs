//! Checks of a response template before a new version is saved, and the line difference
//! between two versions.
//!
//! A template may use only the variables the draft step fills in ([`VARIABLES`]), so a
//! version that names anything else is rejected when it is saved rather than failing on
//! the first lead that needs it.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;
use similar::TextDiff;

use super::KINDS;
use crate::config::Settings;

/// The variables every template kind may use; `compose` fills in each of them.
pub const VARIABLES: [&str; 4] = ["name", "service_name", "price", "ask_for"];

/// The largest template body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template kind `{kind}`; known kinds: {known}", known = KINDS.join(", "))]
    UnknownKind { kind: String },

    #[error("unknown service `{service}`; use a service id from the catalog")]
    UnknownService { service: String },

    #[error("the template body is empty")]
    EmptyBody,

    #[error("the template body has {bytes} bytes; the limit is {MAX_BODY_BYTES} bytes")]
    BodyTooLong { bytes: usize },

    #[error("the template has a syntax error: {message}")]
    Syntax { message: String },

    #[error(
        "the template uses the unknown variable `{variable}`; declared variables: {declared}",
        declared = VARIABLES.join(", ")
    )]
    UnknownVariable { variable: String },

    #[error("the template does not render: {message}")]
    Render { message: String },
}

/// Checks the kind and service of a template key against the kinds and the catalog.
///
/// # Errors
/// [`TemplateError::UnknownKind`] or [`TemplateError::UnknownService`].
pub fn check_key(
    kind: &str,
    service: Option<&str>,
    settings: &Settings,
) -> Result<(), TemplateError> {
    if !KINDS.contains(&kind) {
        return Err(TemplateError::UnknownKind {
            kind: kind.to_string(),
        });
    }
    if let Some(service) = service
        && settings.service(service).is_none()
    {
        return Err(TemplateError::UnknownService {
            service: service.to_string(),
        });
    }
    Ok(())
}

/// Checks a template body: size, syntax, declared variables only, and that it renders
/// with every variable set.
///
/// # Errors
/// The first [`TemplateError`] found, in that order.
pub fn check_body(body: &str) -> Result<(), TemplateError> {
    if body.trim().is_empty() {
        return Err(TemplateError::EmptyBody);
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(TemplateError::BodyTooLong { bytes: body.len() });
    }
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    let template = environment
        .template_from_str(body)
        .map_err(|e| TemplateError::Syntax {
            message: e.to_string(),
        })?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !VARIABLES.contains(&name.as_str()))
        .collect();
    unknown.sort();
    if let Some(variable) = unknown.into_iter().next() {
        return Err(TemplateError::UnknownVariable { variable });
    }
    let sample = json!({
        "name": "[PERSON_1]",
        "service_name": "Стоматология",
        "price": "ориентировочно от 1 000 до 2 000 ₽",
        "ask_for": "удобные дату и время",
    });
    template.render(sample).map_err(|e| TemplateError::Render {
        message: e.to_string(),
    })?;
    Ok(())
}

/// Returns the unified line difference from `old` to `new`, with `old_label` and
/// `new_label` as the file names in its header.
pub fn diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let mut old = old.to_string();
    let mut new = new.to_string();
    // Without a final newline the last line would show as changed in every version.
    for text in [&mut old, &mut new] {
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_pass_the_check() {
        for (kind, service, body) in super::super::shipped_templates() {
            check_key(&kind, service.as_deref(), &Settings::defaults()).unwrap();
            check_body(&body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }

    #[test]
    fn unknown_variable_is_named() {
        let error = check_body("Здравствуйте, {{ name }}! Ждём вас {{ visit_date }}.").unwrap_err();
        assert!(
            matches!(&error, TemplateError::UnknownVariable { variable } if variable == "visit_date"),
            "{error}"
        );
        assert!(error.to_string().contains("visit_date"), "{error}");
    }

    #[test]
    fn variable_set_inside_is_allowed() {
        check_body("{% set greeting = 'Добрый день' %}{{ greeting }}, {{ name }}").unwrap();
    }

    #[test]
    fn syntax_error_is_rejected() {
        let error = check_body("Здравствуйте{% if name %}, {{ name }}").unwrap_err();
        assert!(matches!(error, TemplateError::Syntax { .. }), "{error}");
    }

    #[test]
    fn unknown_kind_and_service_are_rejected() {
        let settings = Settings::defaults();
        assert!(matches!(
            check_key("farewell", None, &settings),
            Err(TemplateError::UnknownKind { .. })
        ));
        assert!(matches!(
            check_key("fallback", Some("yoga"), &settings),
            Err(TemplateError::UnknownService { .. })
        ));
        check_key("price_reply", Some("nails"), &settings).unwrap();
    }

    #[test]
    fn diff_shows_changed_lines() {
        let text = diff("Привет\nПока", "Привет\nДо свидания", "v1", "v2");
        assert!(text.starts_with("--- v1\n+++ v2\n"), "{text}");
        assert!(text.contains("-Пока\n"), "{text}");
        assert!(text.contains("+До свидания\n"), "{text}");
        assert!(text.contains(" Привет\n"), "{text}");
    }
}
