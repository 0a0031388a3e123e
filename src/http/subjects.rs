//! `GET /v1/subjects/export` and `POST /v1/subjects/erase`: requests of a data subject.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use super::query::Params;
use crate::auth::{Principal, Role};
use crate::compliance::ComplianceError;
use crate::compliance::requests::{self, EraseReport, SubjectExport};
use crate::consent::{Subject, SubjectKind};
use crate::store::journal::Actor;

const SUBJECT_FIELDS: [&str; 3] = ["phone", "email", "handle"];
/// The maximum length of a subject value before normalising.
const MAX_VALUE_BYTES: usize = 256;

/// Builds the subject from exactly one of phone, e-mail and handle.
fn subject_of(
    phone: Option<&str>,
    email: Option<&str>,
    handle: Option<&str>,
) -> Result<Subject, ApiError> {
    let given: Vec<(SubjectKind, &str)> = [
        (SubjectKind::Phone, phone),
        (SubjectKind::Email, email),
        (SubjectKind::Handle, handle),
    ]
    .into_iter()
    .filter_map(|(kind, value)| value.map(|value| (kind, value)))
    .collect();
    let [(kind, value)] = given[..] else {
        return Err(ApiError::bad_request(
            "invalid_subject",
            "give exactly one of `phone`, `email` or `handle`",
        ));
    };
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_subject",
            format!("`{}` has more than {MAX_VALUE_BYTES} bytes", kind.as_str()),
        ));
    }
    Subject::new(kind, value, kind.as_str())
        .map_err(|error| ApiError::from(ComplianceError::from(error)))
}

/// Returns everything held on one subject. Role: admin. The export is journaled.
#[utoipa::path(
    get,
    path = "/v1/subjects/export",
    params(
        ("phone" = Option<String>, Query, description = "The subject's phone number"),
        ("email" = Option<String>, Query, description = "The subject's e-mail address"),
        ("handle" = Option<String>, Query, description = "The subject's messenger handle"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Leads, drafts, consents and journal rows of the subject", body = SubjectExport),
        (status = 400, description = "Not exactly one of phone, email, handle", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
        (status = 422, description = "The value is not a valid phone, e-mail or handle", body = ErrorBody),
    )
)]
pub async fn export_subject(
    principal: Principal,
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<SubjectExport>, ApiError> {
    principal.require(&[Role::Admin])?;
    let params = Params::read(query, &SUBJECT_FIELDS)?;
    let subject = subject_of(
        params.get("phone"),
        params.get("email"),
        params.get("handle"),
    )?;
    let actor = Actor::from(&principal);
    let export = state
        .pipeline
        .store
        .call(move |conn| Ok(requests::export(conn, &subject, actor)))
        .await??;
    tracing::info!(
        subject_id = export.subject.subject_id,
        leads = export.leads.len(),
        "subject exported"
    );
    Ok(Json(export))
}

/// The body of `POST /v1/subjects/erase`: exactly one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    phone: Option<String>,
    email: Option<String>,
    handle: Option<String>,
}

/// Removes or anonymises everything held on one subject and writes a destruction act.
/// Role: admin. A repeated erase finds nothing and returns `found: false`.
#[utoipa::path(
    post,
    path = "/v1/subjects/erase",
    request_body = EraseRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "What was erased, and the act", body = EraseReport),
        (status = 400, description = "Invalid JSON, an unknown field, or not exactly one field", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "The value is not a valid phone, e-mail or handle", body = ErrorBody),
    )
)]
pub async fn erase_subject(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EraseReport>, ApiError> {
    principal.require(&[Role::Admin])?;
    let request: EraseRequest = parse_json(&headers, &body, &SUBJECT_FIELDS)?;
    let subject = subject_of(
        request.phone.as_deref(),
        request.email.as_deref(),
        request.handle.as_deref(),
    )?;
    let actor = Actor::from(&principal);
    let settings = state.pipeline.settings.clone();
    let report = state
        .pipeline
        .store
        .call(move |conn| Ok(requests::erase(conn, &subject, actor, &settings)))
        .await??;
    tracing::info!(
        found = report.found,
        subject_id = report.subject_id,
        leads = report.lead_ids.len(),
        act_id = report.act_id,
        "subject erase handled"
    );
    Ok(Json(report))
}
