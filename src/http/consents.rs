//! `POST /v1/consents` (bot) and `GET /v1/consents/verify` (admin): the consent log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use super::leads::{check_channel, check_time, evidence_field};
use crate::auth::{Principal, Role};
use crate::consent::Subject;
use crate::store::consent::{ChainReport, EventKind, NewConsentEvent, Recorded};

const FIELDS: [&str; 7] = [
    "subject",
    "event",
    "purpose",
    "text_version",
    "channel",
    "evidence",
    "at",
];

/// The body of `POST /v1/consents`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    subject: SubjectRequest,
    /// granted or withdrawn.
    event: String,
    /// A purpose with a consent text, such as lead_processing.
    purpose: String,
    /// The consent text version the client saw; by default the purpose's active one.
    text_version: Option<i64>,
    /// One of telegram, whatsapp, instagram, web.
    channel: String,
    /// The bot's id of the message in which the client gave or withdrew consent.
    evidence: String,
    /// RFC 3339 time of that message; by default now.
    at: Option<String>,
}

/// Exactly one of the fields: a phone (normalised to E.164), an e-mail (lower case) or a
/// messenger handle (lower case, without `@`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    phone: Option<String>,
    email: Option<String>,
    handle: Option<String>,
}

/// A logged consent event; the subject is not repeated back.
#[derive(Serialize, ToSchema)]
pub struct ConsentEventView {
    pub id: i64,
    pub subject_kind: String,
    pub event: EventKind,
    pub purpose: String,
    pub text_version: i64,
    pub channel: String,
    pub evidence: String,
    pub at: String,
    pub recorded_at: String,
    /// The row's hash in the chain of the consent log.
    pub sha256: String,
}

fn subject(request: SubjectRequest) -> Result<Subject, ApiError> {
    let invalid = |message: String| ApiError::unprocessable("invalid_subject", message);
    match (request.phone, request.email, request.handle) {
        (Some(phone), None, None) => {
            Subject::phone(&phone, "subject.phone").map_err(|e| invalid(e.message))
        }
        (None, Some(email), None) => {
            Subject::email(&email, "subject.email").map_err(|e| invalid(e.message))
        }
        (None, None, Some(handle)) => {
            Subject::handle(&handle, "subject.handle").map_err(|e| invalid(e.message))
        }
        _ => Err(invalid(
            "`subject` must have exactly one of `phone`, `email` and `handle`".to_string(),
        )),
    }
}

fn validate(request: ConsentRequest, key_id: i64) -> Result<NewConsentEvent, ApiError> {
    let subject = subject(request.subject)?;
    let event = match request.event.as_str() {
        "granted" => EventKind::Granted,
        "withdrawn" => EventKind::Withdrawn,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_event",
                "`event` must be granted or withdrawn",
            ));
        }
    };
    check_channel(&request.channel)?;
    let evidence = evidence_field("evidence", &request.evidence)?;
    if let Some(at) = &request.at {
        check_time("invalid_at", "at", at)?;
    }
    let purpose = request.purpose.trim();
    if purpose.is_empty() || purpose.len() > 64 {
        return Err(ApiError::unprocessable(
            "invalid_purpose",
            "`purpose` must have 1 to 64 bytes, such as lead_processing",
        ));
    }
    Ok(NewConsentEvent {
        subject_kind: subject.kind.as_str().to_string(),
        subject: subject.value,
        event,
        purpose: purpose.to_string(),
        text_version: request.text_version,
        channel: request.channel,
        evidence,
        at: request.at,
        key_id: Some(key_id),
    })
}

/// Records that a client gave or withdrew consent. Role: bot.
///
/// A withdrawal for lead_processing stops at once the subject's leads that wait for the
/// model and the drafts that wait for review.
#[utoipa::path(
    post,
    path = "/v1/consents",
    request_body = ConsentRequest,
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 201, description = "Logged", body = ConsentEventView),
        (status = 200, description = "The same event was logged before", body = ConsentEventView),
        (status = 400, description = "Invalid JSON, unknown or missing field", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not bot", body = ErrorBody),
        (status = 422, description = "An invalid value or an unknown consent text", body = ErrorBody),
    )
)]
pub async fn record_consent(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Bot])?;
    let request: ConsentRequest = parse_json(&headers, &body, &FIELDS)?;
    let event = validate(request, principal.key_id)?;
    let recorded = state.pipeline.record_consent(event).await?;
    let status = match recorded {
        Recorded::Appended(_) => StatusCode::CREATED,
        Recorded::Repeated(_) => StatusCode::OK,
    };
    let record = recorded.record().clone();
    let view = ConsentEventView {
        id: record.id,
        subject_kind: record.subject_kind,
        event: record.event,
        purpose: record.purpose,
        text_version: record.text_version,
        channel: record.channel,
        evidence: record.evidence,
        at: record.at,
        recorded_at: record.recorded_at,
        sha256: record.sha256,
    };
    Ok((status, Json(view)).into_response())
}

/// Recomputes the hash chain of the consent log. Role: admin.
#[utoipa::path(
    get,
    path = "/v1/consents/verify",
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 200, description = "The result; `valid` is false when a row was changed, \
            removed or reordered", body = ChainReport),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
    )
)]
pub async fn verify_consents(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<ChainReport>, ApiError> {
    principal.require(&[Role::Admin])?;
    let report = state
        .pipeline
        .store
        .call(|conn| crate::store::consent::verify_chain(conn))
        .await?;
    if !report.valid {
        tracing::warn!(
            row = report.error.as_ref().and_then(|e| e.id),
            "the consent log's hash chain is broken"
        );
    }
    Ok(Json(report))
}
