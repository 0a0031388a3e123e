//! `/v1/consent-texts`: the versions of the consent texts. Every role reads them, because a
//! bot shows them to clients; only admins add, change and activate them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use crate::auth::{Principal, Role};
use crate::consent::{ConsentTextError, ConsentTextInput, prepare_text};
use crate::store::StoreError;
use crate::store::consent::{self as stored, ConsentText, NewConsentText};

const FIELDS: [&str; 8] = [
    "purpose",
    "operator",
    "categories",
    "operations",
    "term",
    "withdrawal",
    "policy_url",
    "body",
];

impl From<ConsentTextError> for ApiError {
    fn from(error: ConsentTextError) -> ApiError {
        ApiError::unprocessable("invalid_consent_text", error.to_string())
    }
}

fn parse_version(version: &str) -> Result<i64, ApiError> {
    version.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_version",
            "the version in the path must be an integer",
        )
    })
}

fn text_not_found(purpose: &str, version: i64) -> ApiError {
    ApiError::not_found(
        "consent_text_not_found",
        format!("consent text {purpose} version {version} does not exist"),
    )
}

/// Maps a missing version to 404; other store errors keep their usual mapping.
fn not_found_as_404(error: StoreError, purpose: &str, version: i64) -> ApiError {
    match error {
        StoreError::UnknownConsentText { .. } => text_not_found(purpose, version),
        error => ApiError::from(error),
    }
}

fn prepared(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<NewConsentText, ApiError> {
    let input: ConsentTextInput = parse_json(headers, body, &FIELDS)?;
    Ok(prepare_text(input, &state.pipeline.settings.operator)?)
}

/// Lists every version of every purpose. Roles: bot, staff, admin.
#[utoipa::path(
    get,
    path = "/v1/consent-texts",
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 200, description = "All versions by purpose and version", body = [ConsentText]),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
    )
)]
pub async fn list_texts(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<Vec<ConsentText>>, ApiError> {
    principal.require(&[Role::Bot, Role::Staff, Role::Admin])?;
    let texts = state
        .pipeline
        .store
        .call(|conn| stored::list_texts(conn))
        .await?;
    Ok(Json(texts))
}

/// Adds a new, inactive version of a purpose. Role: admin.
#[utoipa::path(
    post,
    path = "/v1/consent-texts",
    request_body = ConsentTextInput,
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 201, description = "Stored as the purpose's next version", body = ConsentText),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
        (status = 422, description = "An invalid field or template", body = ErrorBody),
    )
)]
pub async fn add_text(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ConsentText>), ApiError> {
    principal.require(&[Role::Admin])?;
    let text = prepared(&state, &headers, &body)?;
    let key_id = principal.key_id;
    let stored = state
        .pipeline
        .store
        .call(move |conn| stored::add_text(conn, &text, Some(key_id)))
        .await?;
    tracing::info!(purpose = %stored.purpose, version = stored.version, "consent text added");
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Returns one version. Roles: bot, staff, admin.
#[utoipa::path(
    get,
    path = "/v1/consent-texts/{purpose}/{version}",
    params(
        ("purpose" = String, Path, description = "Such as lead_processing"),
        ("version" = i64, Path, description = "The version number"),
    ),
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 200, description = "The version", body = ConsentText),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
    )
)]
pub async fn get_text(
    principal: Principal,
    State(state): State<AppState>,
    Path((purpose, version)): Path<(String, String)>,
) -> Result<Json<ConsentText>, ApiError> {
    principal.require(&[Role::Bot, Role::Staff, Role::Admin])?;
    let version = parse_version(&version)?;
    let lookup = purpose.clone();
    let text = state
        .pipeline
        .store
        .call(move |conn| stored::get_text(conn, &lookup, version))
        .await?;
    text.map(Json)
        .ok_or_else(|| text_not_found(&purpose, version))
}

/// Replaces a version that no consent event refers to yet. Role: admin.
#[utoipa::path(
    put,
    path = "/v1/consent-texts/{purpose}/{version}",
    params(
        ("purpose" = String, Path, description = "Such as lead_processing"),
        ("version" = i64, Path, description = "The version number"),
    ),
    request_body = ConsentTextInput,
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 200, description = "Changed", body = ConsentText),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 409, description = "A consent event refers to the version", body = ErrorBody),
        (status = 422, description = "An invalid field or template", body = ErrorBody),
    )
)]
pub async fn update_text(
    principal: Principal,
    State(state): State<AppState>,
    Path((purpose, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ConsentText>, ApiError> {
    principal.require(&[Role::Admin])?;
    let version = parse_version(&version)?;
    let text = prepared(&state, &headers, &body)?;
    if text.purpose != purpose {
        return Err(ApiError::unprocessable(
            "purpose_mismatch",
            "`purpose` in the body differs from the purpose in the path",
        ));
    }
    let key_id = principal.key_id;
    let stored = state
        .pipeline
        .store
        .call(move |conn| stored::update_text(conn, version, &text, Some(key_id)))
        .await
        .map_err(|error| not_found_as_404(error, &purpose, version))?;
    tracing::info!(purpose = %stored.purpose, version, "consent text changed");
    Ok(Json(stored))
}

/// Makes a version the purpose's active one. Role: admin.
#[utoipa::path(
    post,
    path = "/v1/consent-texts/{purpose}/{version}/activate",
    params(
        ("purpose" = String, Path, description = "Such as lead_processing"),
        ("version" = i64, Path, description = "The version number"),
    ),
    security(("api_key" = []), ("api_key_header" = [])),
    responses(
        (status = 200, description = "Now active", body = ConsentText),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
    )
)]
pub async fn activate_text(
    principal: Principal,
    State(state): State<AppState>,
    Path((purpose, version)): Path<(String, String)>,
) -> Result<Json<ConsentText>, ApiError> {
    principal.require(&[Role::Admin])?;
    let version = parse_version(&version)?;
    let key_id = principal.key_id;
    let lookup = purpose.clone();
    let stored = state
        .pipeline
        .store
        .call(move |conn| stored::activate_text(conn, &lookup, version, Some(key_id)))
        .await
        .map_err(|error| not_found_as_404(error, &purpose, version))?;
    tracing::info!(purpose = %stored.purpose, version, "consent text activated");
    Ok(Json(stored))
}
