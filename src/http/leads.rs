//! `POST /v1/leads` and `GET /v1/leads/{id}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, json_error};
use crate::auth::{Principal, Role};
use crate::pipeline::{Contact, LeadView, Progress, ValidLead};
use crate::store::Inserted;

/// The maximum size of a lead's text in bytes, after trimming.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
const MAX_ID_BYTES: usize = 256;
const MAX_CONTACT_BYTES: usize = 256;
const CHANNELS: [&str; 4] = ["telegram", "whatsapp", "instagram", "web"];
const FIELDS: [&str; 5] = ["channel", "external_id", "text", "contact", "received_at"];
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
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    handle: Option<String>,
}

fn validate(request: LeadRequest, key_id: i64) -> Result<ValidLead, ApiError> {
    if !CHANNELS.contains(&request.channel.as_str()) {
        return Err(ApiError::unprocessable(
            "invalid_channel",
            format!("`channel` must be one of {}", CHANNELS.join(", ")),
        ));
    }
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
        let format = time::format_description::well_known::Rfc3339;
        if time::OffsetDateTime::parse(received_at, &format).is_err() {
            return Err(ApiError::unprocessable(
                "invalid_received_at",
                "`received_at` must be an RFC 3339 time such as 2026-12-04T10:00:00Z",
            ));
        }
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
    Ok(ValidLead {
        channel: request.channel,
        external_id: external_id.to_string(),
        text: text.to_string(),
        contact,
        received_at: request.received_at,
        key_id: Some(key_id),
    })
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

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<LeadRequest, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(body).map_err(|e| json_error(&e, &FIELDS))
}

fn accepted_later(lead_id: i64) -> Response {
    let body = serde_json::json!({ "lead_id": lead_id, "status": "processing" });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// Returns a lead's view unless a bot asks for another key's lead, which it gets as 404.
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
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Qualified: status pending_review or spam", body = LeadView),
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
    let request = parse_body(&headers, &body)?;
    let lead = validate(request, principal.key_id)?;
    let span = tracing::Span::current();
    span.record("bytes", lead.text.len());
    let pipeline = &state.pipeline;
    let lead_id = match pipeline.accept(lead).await? {
        Inserted::Existing(id) => {
            span.record("lead_id", id);
            let view = pipeline.view(id).await?.ok_or(ApiError::not_found(
                "lead_not_found",
                format!("lead {id} disappeared while it was read"),
            ))?;
            if view.key_id != Some(principal.key_id) {
                return Err(ApiError::conflict(
                    "external_id_taken",
                    "another API key already sent a lead with this `channel` and \
                     `external_id`; use an `external_id` of your own",
                ));
            }
            super::journal::lead_read(&state, &principal, &view, "POST /v1/leads").await?;
            return Ok((StatusCode::OK, Json(view)).into_response());
        }
        Inserted::Created(id) => id,
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
            super::journal::lead_read(&state, &principal, &view, "POST /v1/leads").await?;
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
    security(("api_key" = [])),
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
    super::journal::lead_read(&state, &principal, &view, "GET /v1/leads/{id}").await?;
    Ok(Json(view))
}
