//! Consent of the subject to the processing of their data: who the subject of a lead is,
//! and the consent texts that a consent event refers to.
//!
//! A consent text states the operator, the purpose, the categories of data, the operations,
//! the term, how to withdraw, and the policy link. Its `term`, `withdrawal` and `body` are
//! minijinja templates filled in once, when the version is stored, so a stored version is
//! the exact text a client saw.

mod subject;

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::config::Operator;
use crate::store::consent::NewConsentText;

pub use subject::{
    ContactFields, InvalidSubject, Subject, SubjectKind, normalize, subject_of_lead,
};

/// The purpose a lead needs consent for: handling the client's request.
pub const LEAD_PROCESSING: &str = "lead_processing";

const SHIPPED_TEXT: &str = include_str!("../../prompts/consent.ru.toml");
/// The maximum length of a rendered body, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// The maximum length of each other field, in bytes.
const MAX_FIELD_BYTES: usize = 2048;

/// The fields of a new consent text version, as an admin sends them or a file contains them.
/// `operator` and `policy_url` default to the configuration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentTextInput {
    /// A snake_case name such as `lead_processing`.
    pub purpose: String,
    /// The operator's name, registration and address; by default from the configuration.
    pub operator: Option<String>,
    /// The categories of personal data processed.
    pub categories: Vec<String>,
    /// The operations done with the data.
    pub operations: Vec<String>,
    /// How long the consent lasts (a template).
    pub term: String,
    /// How to withdraw the consent (a template).
    pub withdrawal: String,
    /// The personal data processing policy; by default from the configuration.
    pub policy_url: Option<String>,
    /// The full text shown to the client (a template); see the module documentation.
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentTextError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConsentTextError {
    ConsentTextError::Invalid {
        field,
        message: message.into(),
    }
}

/// Returns the operator line of the consent text: name, registration and address.
pub fn operator_line(operator: &Operator) -> String {
    format!(
        "{}, {}, адрес: {}",
        operator.name.trim(),
        operator.registration.trim(),
        operator.address.trim()
    )
}

fn check_text(field: &'static str, value: &str, max_bytes: usize) -> Result<(), ConsentTextError> {
    if value.trim().is_empty() {
        return Err(invalid(field, format!("`{field}` is empty")));
    }
    if value.len() > max_bytes {
        return Err(invalid(
            field,
            format!(
                "`{field}` has {} bytes; the limit is {max_bytes}",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn check_list(field: &'static str, values: &[String]) -> Result<(), ConsentTextError> {
    if values.is_empty() {
        return Err(invalid(
            field,
            format!("`{field}` needs at least one entry"),
        ));
    }
    for value in values {
        check_text(field, value, MAX_FIELD_BYTES)?;
    }
    Ok(())
}

/// Renders one template field with the given variables; an unknown variable is an error.
fn render(
    env: &Environment<'_>,
    field: &'static str,
    template: &str,
    context: &minijinja::Value,
) -> Result<String, ConsentTextError> {
    env.render_str(template, context)
        .map(|text| text.trim().to_string())
        .map_err(|error| {
            // The template is the admin's own text, not a client's, so its error may be shown.
            invalid(field, format!("`{field}` is not a valid template: {error}"))
        })
}

/// Checks a new version and fills in its templates.
///
/// # Errors
/// [`ConsentTextError::Invalid`] naming the field: an empty or too long field, a purpose
/// that is not snake_case, a policy link that is not http(s), or a template error such as
/// an unknown variable.
pub fn prepare_text(
    input: ConsentTextInput,
    operator: &Operator,
) -> Result<NewConsentText, ConsentTextError> {
    let purpose = input.purpose.trim().to_string();
    let purpose_valid = !purpose.is_empty()
        && purpose.len() <= 64
        && purpose
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !purpose_valid {
        return Err(invalid(
            "purpose",
            "`purpose` must be 1 to 64 characters of a-z, 0-9 and _, such as lead_processing",
        ));
    }
    let operator_text = input
        .operator
        .unwrap_or_else(|| operator_line(operator))
        .trim()
        .to_string();
    check_text("operator", &operator_text, MAX_FIELD_BYTES)?;
    let policy_url = input
        .policy_url
        .unwrap_or_else(|| operator.policy_url.clone())
        .trim()
        .to_string();
    check_text("policy_url", &policy_url, MAX_FIELD_BYTES)?;
    if !policy_url.starts_with("https://") && !policy_url.starts_with("http://") {
        return Err(invalid(
            "policy_url",
            "`policy_url` must be an http:// or https:// address",
        ));
    }
    check_list("categories", &input.categories)?;
    check_list("operations", &input.operations)?;
    check_text("term", &input.term, MAX_FIELD_BYTES)?;
    check_text("withdrawal", &input.withdrawal, MAX_FIELD_BYTES)?;
    check_text("body", &input.body, MAX_BODY_BYTES)?;

    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let base = minijinja::context! {
        operator => &operator_text,
        contact => operator.contact.trim(),
        policy_url => &policy_url,
    };
    let term = render(&env, "term", &input.term, &base)?;
    let withdrawal = render(&env, "withdrawal", &input.withdrawal, &base)?;
    let full = minijinja::context! {
        categories => &input.categories,
        operations => &input.operations,
        term => &term,
        withdrawal => &withdrawal,
        ..base
    };
    let body = render(&env, "body", &input.body, &full)?;
    check_text("body", &body, MAX_BODY_BYTES)?;
    Ok(NewConsentText {
        purpose,
        operator: operator_text,
        categories: input.categories,
        operations: input.operations,
        term,
        withdrawal,
        policy_url,
        body,
    })
}

/// Parses a consent text file (TOML with the fields of [`ConsentTextInput`]).
///
/// # Errors
/// When the text is not valid TOML or has an unknown or missing field.
pub fn parse_text_file(text: &str) -> Result<ConsentTextInput, toml::de::Error> {
    toml::from_str(text)
}

/// Returns the shipped Russian text for `lead_processing`, filled in for `operator`.
///
/// # Errors
/// When the operator's values make the text invalid, such as a policy link that is not
/// http(s).
pub fn shipped_text(operator: &Operator) -> Result<NewConsentText, ConsentTextError> {
    let input = parse_text_file(SHIPPED_TEXT).expect("prompts/consent.ru.toml has only known keys");
    prepare_text(input, operator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn shipped_text_names_the_operator() {
        let settings = Settings::defaults();
        let text = shipped_text(&settings.operator).unwrap();
        assert_eq!(text.purpose, LEAD_PROCESSING);
        assert!(text.body.contains(&settings.operator.name));
        assert!(text.body.contains(&settings.operator.policy_url));
        assert!(text.withdrawal.contains(&settings.operator.contact));
        assert!(text.body.contains(&text.withdrawal));
        assert!(
            !text.body.contains("{{"),
            "an unrendered template: {}",
            text.body
        );
    }

    #[test]
    fn unknown_variable_rejected() {
        let settings = Settings::defaults();
        let mut input = parse_text_file(SHIPPED_TEXT).unwrap();
        input.body = "Согласие {{ operatr }}".into();
        let error = prepare_text(input, &settings.operator).unwrap_err();
        let ConsentTextError::Invalid { field, .. } = error;
        assert_eq!(field, "body");
    }
}
