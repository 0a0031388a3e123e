//! `POST /v1/leads` and `GET /v1/leads/{id}`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::body::read_body;
use super::error::{ApiError, ErrorBody, json_error, require_json};
use crate::auth::{Principal, Role};
use crate::pipeline::{
    Accepted, ConsentGate, Contact, GivenConsent, LeadView, Progress, ValidLead,
};

/// The maximum size of a lead's text in bytes, after trimming.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The maximum size of `external_id` in bytes, after trimming.
pub const MAX_ID_BYTES: usize = 256;
/// The maximum size of each contact field in bytes, after trimming.
pub const MAX_CONTACT_BYTES: usize = 256;
/// The accepted values of `channel`.
pub const CHANNELS: [&str; 4] = ["telegram", "whatsapp", "instagram", "web"];
const FIELDS: [&str; 6] = [
    "channel",
    "external_id",
    "text",
    "contact",
    "received_at",
    "consent",
];
/// Seconds a 202 response tells the bot to wait before it requests the lead again.
const RETRY_AFTER_SECONDS: u32 = 5;

// The schema's lengths count characters, as JSON Schema does, while the limits above count
// UTF-8 bytes, so a value with non-ASCII characters can fit the schema and still be
// rejected. The `pattern` of a required string matches any character outside Unicode's
// White_Space set, which `str::trim` removes, so it rejects exactly the blank values.

/// The body of `POST /v1/leads`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadRequest {
    #[schema(schema_with = channel_schema)]
    channel: String,
    /// The bot's id of the message, 1 to 256 bytes after trimming; the pair
    /// (channel, external_id) makes a call idempotent.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "[^\\t\\n\\u000b\\u000c\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    external_id: String,
    /// The client's message, 1 to 16384 bytes after trimming.
    #[schema(
        min_length = 1,
        max_length = 16384,
        pattern = "[^\\t\\n\\u000b\\u000c\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    text: String,
    contact: Option<ContactRequest>,
    /// RFC 3339 time the bot received the message.
    #[schema(format = DateTime)]
    received_at: Option<String>,
    /// The client's reply to the consent text, when this message carries it.
    consent: Option<LeadConsentRequest>,
}

/// A consent given or withdrawn in the message of a lead.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadConsentRequest {
    /// True when the client agrees, false when they withdraw their consent.
    granted: bool,
    /// The consent text version the client saw; by default the active one.
    text_version: Option<i64>,
    /// The bot's id of the message with the reply; by default the lead's `external_id`.
    evidence: Option<String>,
}

/// The client's contact details; a blank field counts as absent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// At most 256 bytes after trimming, as are the other fields.
    #[schema(max_length = 256)]
    name: Option<String>,
    #[schema(max_length = 256)]
    phone: Option<String>,
    #[schema(max_length = 256)]
    email: Option<String>,
    #[schema(max_length = 256)]
    handle: Option<String>,
}

fn channel_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CHANNELS))
        .description(Some("The chat channel the lead came from."))
        .build()
}

/// Checks that `channel` is one of the API's channels.
pub(super) fn check_channel(channel: &str) -> Result<(), ApiError> {
    if !CHANNELS.contains(&channel) {
        return Err(ApiError::unprocessable(
            "invalid_channel",
            format!("`channel` must be one of {}", CHANNELS.join(", ")),
        ));
    }
    Ok(())
}

/// Checks that a time field is RFC 3339, else returns a 422 error with `code`.
pub(super) fn check_time(code: &'static str, field: &str, value: &str) -> Result<(), ApiError> {
    let format = time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(value, &format).is_err() {
        return Err(ApiError::unprocessable(
            code,
            format!("`{field}` must be an RFC 3339 time such as 2026-12-04T10:00:00Z"),
        ));
    }
    Ok(())
}

fn validate(request: LeadRequest, key_id: i64) -> Result<ValidLead, ApiError> {
    check_channel(&request.channel)?;
    let external_id = request.external_id.trim();
    if external_id.is_empty() || external_id.len() > MAX_ID_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_external_id",
            format!("`external_id` must have 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    let text = request.text.trim();
    if text.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_text",
            "`text` is empty; send the client's message",
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::unprocessable(
            "text_too_long",
            format!(
                "`text` has {} bytes; the limit is {MAX_TEXT_BYTES} bytes",
                text.len()
            ),
        ));
    }
    if let Some(received_at) = &request.received_at {
        check_time("invalid_received_at", "received_at", received_at)?;
    }
    let contact = match request.contact {
        Some(c) => Contact {
            name: contact_field("name", c.name)?,
            phone: contact_field("phone", c.phone)?,
            email: contact_field("email", c.email)?,
            handle: contact_field("handle", c.handle)?,
        },
        None => Contact::default(),
    };
    let given = request
        .consent
        .map(|consent| -> Result<GivenConsent, ApiError> {
            let evidence = match consent.evidence {
                Some(evidence) => Some(evidence_field("consent.evidence", &evidence)?),
                None => None,
            };
            Ok(GivenConsent {
                granted: consent.granted,
                text_version: consent.text_version,
                evidence,
            })
        });
    Ok(ValidLead {
        channel: request.channel,
        external_id: external_id.to_string(),
        text: text.to_string(),
        contact,
        received_at: request.received_at,
        key_id: Some(key_id),
        consent: ConsentGate::Checked {
            given: given.transpose()?,
        },
    })
}

/// Trims a message id used as evidence of consent and checks its length.
pub fn evidence_field(name: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_ID_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_evidence",
            format!("`{name}` must have 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(value.to_string())
}

fn contact_field(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim();
    if value.len() > MAX_CONTACT_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_contact",
            format!("`contact.{name}` has more than {MAX_CONTACT_BYTES} bytes"),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_string()))
}

async fn stored_view(
    state: &AppState,
    principal: &Principal,
    id: i64,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let view = state.pipeline.view(id).await?.ok_or(ApiError::not_found(
        "lead_not_found",
        format!("lead {id} disappeared while it was read"),
    ))?;
    super::journal::lead_read(state, principal, &view, "POST /v1/leads").await?;
    Ok((status, Json(view)).into_response())
}

/// Returns 201 with the finished lead and journals the read. The lead is stored by now, so
/// a failed read or journal write returns 202 rather than an error, because an accepted
/// lead never gets a 503.
async fn finished_view(state: &AppState, principal: &Principal, lead_id: i64) -> Response {
    let view = match state.pipeline.view(lead_id).await {
        Ok(Some(view)) => view,
        Ok(None) => return accepted_later(lead_id),
        Err(error) => {
            tracing::warn!(lead_id, %error, "reading a finished lead failed; responding 202");
            return accepted_later(lead_id);
        }
    };
    match super::journal::lead_read(state, principal, &view, "POST /v1/leads").await {
        Ok(()) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(error) => {
            tracing::warn!(
                lead_id,
                code = error.code,
                "journaling a lead read failed; responding 202"
            );
            accepted_later(lead_id)
        }
    }
}

/// Parses and validates the JSON body of `POST /v1/leads`, with the same errors the
/// endpoint returns. The handler calls it, and so do the fuzz targets in `fuzz/`.
///
/// # Errors
/// A 400 error for a body that is not a JSON object of the accepted fields, and a 422
/// error for a field with an invalid value.
pub fn parse_lead(body: &[u8], key_id: i64) -> Result<ValidLead, ApiError> {
    let request: LeadRequest = serde_json::from_slice(body).map_err(|e| json_error(&e, &FIELDS))?;
    validate(request, key_id)
}

fn accepted_later(lead_id: i64) -> Response {
    let body = serde_json::json!({ "lead_id": lead_id, "status": "processing" });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// Returns a lead's view, or a 404 error when a bot requests another key's lead.
fn visible_to(
    principal: &Principal,
    view: Option<LeadView>,
    id: i64,
) -> Result<LeadView, ApiError> {
    view.filter(|view| principal.role != Role::Bot || view.key_id == Some(principal.key_id))
        .ok_or_else(|| ApiError::not_found("lead_not_found", format!("lead {id} does not exist")))
}

/// Accepts a lead, qualifies it and drafts a reply. Role: bot.
#[utoipa::path(
    post,
    path = "/v1/leads",
    request_body = LeadRequest,
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (
            status = 201,
            description = "Qualified (status pending_review or spam), or stored redacted \
                without a valid consent (status consent_required, with consent_text)",
            body = LeadView
        ),
        (status = 200, description = "The same (channel, external_id) again: the stored lead", body = LeadView),
        (status = 202, description = "Accepted, finished in the background: status processing",
            body = LeadView,
            headers(("Retry-After" = u32, description = "Seconds to wait before GET /v1/leads/{id}"))),
        (status = 400, description = "Invalid JSON, unknown or missing field", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not bot", body = ErrorBody),
        (status = 409, description = "Another key sent this (channel, external_id)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the request timeout", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field has an invalid value", body = ErrorBody),
        (status = 429, description = "Over the rate limit, nothing stored; see Retry-After", body = ErrorBody),
        (status = 503, description = "The database stayed locked, nothing stored; see Retry-After", body = ErrorBody),
    )
)]
pub async fn create_lead(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Bot])?;
    state
        .rate_limiter
        .check(&principal.key_id.to_string())
        .map_err(ApiError::rate_limited)?;
    let pipeline = &state.pipeline;
    let limits = &pipeline.settings.limits;
    let timeout = pipeline.settings.request_timeout();
    require_json(&headers)?;
    let body = read_body(&headers, body, limits.max_body_bytes, timeout).await?;
    let lead = parse_lead(&body, principal.key_id)?;
    let span = tracing::Span::current();
    span.record("bytes", lead.text.len());
    let (lead_id, progress) = match pipeline.accept_and_start(lead).await? {
        Accepted::Existing(id) => {
            span.record("lead_id", id);
            return stored_view(&state, &principal, id, StatusCode::OK).await;
        }
        Accepted::ConsentRequired(id) => {
            span.record("lead_id", id);
            return stored_view(&state, &principal, id, StatusCode::CREATED).await;
        }
        Accepted::OtherKey => {
            return Err(ApiError::conflict(
                "external_id_taken",
                "another API key already sent a lead with this `channel` and `external_id`; \
                 use an `external_id` of your own",
            ));
        }
        Accepted::Started(id, progress) => (id, progress),
    };
    span.record("lead_id", lead_id);
    let wait = pipeline.settings.wait();
    match tokio::time::timeout(wait, progress).await {
        Ok(Ok(Progress::Finished(Ok(())))) => Ok(finished_view(&state, &principal, lead_id).await),
        Ok(Ok(Progress::Finished(Err(_)))) | Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "processing_failed",
            format!("lead {lead_id} was stored but processing it failed; see the server log"),
        )),
        Ok(Ok(Progress::Queued)) | Err(_) => Ok(accepted_later(lead_id)),
    }
}

/// Returns a lead's current state. Roles: bot (its own leads only), staff, admin.
#[utoipa::path(
    get,
    path = "/v1/leads/{id}",
    params(("id" = i64, Path, description = "The lead id from POST /v1/leads")),
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 200, description = "The lead as it is now", body = LeadView),
        (status = 400, description = "The id is not a 64-bit integer", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such lead, or another bot's lead", body = ErrorBody),
    )
)]
pub async fn get_lead(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LeadView>, ApiError> {
    principal.require(&[Role::Bot, Role::Staff, Role::Admin])?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_lead_id",
            "the lead id in the path must be an integer",
        )
    })?;
    tracing::Span::current().record("lead_id", id);
    let view = visible_to(&principal, state.pipeline.view(id).await?, id)?;
    super::journal::lead_read(&state, &principal, &view, "GET /v1/leads/{id}").await?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::*;

    fn request_schema() -> serde_json::Value {
        let document = serde_json::to_value(crate::http::ApiDoc::openapi()).unwrap();
        document["components"]["schemas"]["LeadRequest"].clone()
    }

    #[test]
    fn blank_pattern_matches_trim() {
        let schema = request_schema();
        for field in ["external_id", "text"] {
            let pattern = schema["properties"][field]["pattern"]
                .as_str()
                .unwrap_or_else(|| panic!("{field} has no pattern"));
            let regex = regex::Regex::new(pattern).unwrap();
            for c in (0..=0x10FFFF).filter_map(char::from_u32) {
                let value = c.to_string();
                assert_eq!(
                    regex.is_match(&value),
                    !value.trim().is_empty(),
                    "{field}: U+{:04X}",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn schema_states_limits() {
        let schema = request_schema();
        let properties = &schema["properties"];
        let channels: Vec<&str> = properties["channel"]["enum"]
            .as_array()
            .expect("channel enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert_eq!(channels, CHANNELS);
        assert_eq!(properties["external_id"]["maxLength"], MAX_ID_BYTES);
        assert_eq!(properties["text"]["maxLength"], MAX_TEXT_BYTES);
        assert_eq!(properties["received_at"]["format"], "date-time");
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn parse_lead_trims_and_rejects() {
        let lead = parse_lead(
            br#"{"channel": "web", "external_id": " a ", "text": " hi ", "contact": {"name": " "}}"#,
            1,
        )
        .unwrap();
        assert_eq!(lead.external_id, "a");
        assert_eq!(lead.text, "hi");
        assert_eq!(lead.contact.name, None);
        let cases: [(&[u8], &str); 4] = [
            (b"{", "invalid_json"),
            (
                br#"{"channel": "fax", "external_id": "a", "text": "b"}"#,
                "invalid_channel",
            ),
            (
                br#"{"channel": "web", "external_id": "a", "text": "\u2003"}"#,
                "empty_text",
            ),
            (
                br#"{"channel": "web", "external_id": "a"}"#,
                "missing_field",
            ),
        ];
        for (body, code) in cases {
            let error = parse_lead(body, 1).err().expect("an error");
            assert_eq!(error.code, code, "{}", String::from_utf8_lossy(body));
        }
    }
}
