//! `POST /v1/leads` and `GET /v1/leads/{id}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use crate::auth::{Principal, Role};
use crate::pipeline::{ConsentGate, Contact, GivenConsent, LeadView, Progress, ValidLead};
use crate::store::Inserted;

/// The maximum size of a lead's text in bytes, after trimming.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
const MAX_ID_BYTES: usize = 256;
const MAX_CONTACT_BYTES: usize = 256;
const CHANNELS: [&str; 4] = ["telegram", "whatsapp", "instagram", "web"];
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

/// The body of `POST /v1/leads`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadRequest {
    /// One of telegram, whatsapp, instagram, web.
    channel: String,
    /// The bot's id of the message; the pair (channel, external_id) makes a call idempotent.
    external_id: String,
    /// The client's message, 1 to 16384 bytes after trimming.
    text: String,
    contact: Option<ContactRequest>,
    /// RFC 3339 time the bot received the message.
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    handle: Option<String>,
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
    pipeline: &crate::pipeline::Pipeline,
    id: i64,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let view = pipeline.view(id).await?.ok_or(ApiError::not_found(
        "lead_not_found",
        format!("lead {id} disappeared while it was read"),
    ))?;
    Ok((status, Json(view)).into_response())
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
        (status = 202, description = "Accepted, finished in the background; see Retry-After"),
        (status = 400, description = "Invalid JSON, unknown or missing field", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not bot", body = ErrorBody),
        (status = 409, description = "Another key sent this (channel, external_id)", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field has an invalid value", body = ErrorBody),
    )
)]
pub async fn create_lead(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Bot])?;
    let request: LeadRequest = parse_json(&headers, &body, &FIELDS)?;
    let lead = validate(request, principal.key_id)?;
    let span = tracing::Span::current();
    span.record("bytes", lead.text.len());
    let pipeline = &state.pipeline;
    let lead_id = match pipeline.accept(lead).await? {
        Inserted::Existing(id) => {
            span.record("lead_id", id);
            return stored_view(pipeline, id, StatusCode::OK).await;
        }
        Inserted::ConsentRequired(id) => {
            span.record("lead_id", id);
            return stored_view(pipeline, id, StatusCode::CREATED).await;
        }
        Inserted::OtherKey => {
            return Err(ApiError::conflict(
                "external_id_taken",
                "another API key already sent a lead with this `channel` and `external_id`; \
                 use an `external_id` of your own",
            ));
        }
        Inserted::Created(id) | Inserted::Reopened(id) => id,
    };
    span.record("lead_id", lead_id);
    let progress = pipeline.spawn_process(lead_id);
    let wait = pipeline.settings.wait();
    match tokio::time::timeout(wait, progress).await {
        Ok(Ok(Progress::Finished(Ok(())))) => {
            let view = pipeline.view(lead_id).await?.ok_or(ApiError::not_found(
                "lead_not_found",
                format!("lead {lead_id} disappeared while it was read"),
            ))?;
            Ok((StatusCode::CREATED, Json(view)).into_response())
        }
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
    if view.draft.is_some() {
        // The draft carries the client's real values, so reading it is journaled.
        let key_id = principal.key_id;
        state
            .pipeline
            .store
            .call(move |conn| {
                let fields = serde_json::json!({ "fields": ["draft"] });
                crate::store::queries::journal_by(
                    conn,
                    "lead_read",
                    Some(id),
                    Some(key_id),
                    &fields,
                )
            })
            .await?;
    }
    Ok(Json(view))
}
