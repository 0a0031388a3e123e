//! The response template API under `/v1/templates`: list keys and versions, save a new
//! version, activate one, roll back, and show the difference between two versions.
//!
//! A key is the `{kind}` in the path and the optional `service` query parameter.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::AppState;

use super::error::{ApiError, ErrorBody, parse_json};
use crate::auth::{Principal, Role};
use crate::draft::templates::{self as checks};
use crate::store::templates::{self as versions, Activation};
use crate::store::{Author, StoreError};

const SAVE_FIELDS: [&str; 2] = ["body", "activate"];

#[derive(Deserialize)]
pub struct KeyQuery {
    service: Option<String>,
}

#[derive(Deserialize)]
pub struct DiffQuery {
    service: Option<String>,
    from: i64,
    to: i64,
}

/// The body of `POST /v1/templates/{kind}/versions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// The minijinja text of the new version.
    body: String,
    /// Also make the new version the active one; false when absent.
    #[serde(default)]
    activate: bool,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "invalid query parameters: `service` is a service id, `from`, `to` and versions \
             are integers",
        )
    })
}

/// Checks the key and returns its service with an empty value read as none.
fn key(state: &AppState, kind: &str, service: Option<String>) -> Result<Option<String>, ApiError> {
    let service = service.filter(|s| !s.is_empty());
    checks::check_key(kind, service.as_deref(), &state.pipeline.settings)?;
    Ok(service)
}

fn parse_version(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_version",
            "the version in the path must be an integer",
        )
    })
}

fn version_not_found(kind: &str, version: i64) -> ApiError {
    ApiError::not_found(
        "template_version_not_found",
        format!("template `{kind}` has no version {version} for this service"),
    )
}

async fn with_store<R: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&mut rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, ApiError> {
    Ok(state.pipeline.store.call(work).await?)
}

/// Lists the template keys with their active and newest versions.
#[utoipa::path(get, path = "/v1/templates",
    responses((status = 200, description = "Every key: kind, service, active_version, latest_version")))]
pub async fn list_keys(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Admin])?;
    let keys = with_store(&state, |conn| versions::list_keys(conn)).await?;
    Ok(Json(json!({ "templates": keys })))
}

/// Lists the versions of one key, oldest first, with who saved each and when.
#[utoipa::path(get, path = "/v1/templates/{kind}/versions",
    params(("kind" = String, Path), ("service" = Option<String>, Query)),
    responses(
        (status = 200, description = "The versions"),
        (status = 404, description = "The key has no versions", body = ErrorBody),
        (status = 422, description = "Unknown kind or service", body = ErrorBody)))]
pub async fn list_versions(
    principal: Principal,
    State(state): State<AppState>,
    Path(kind): Path<String>,
    params: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Admin])?;
    let service = key(&state, &kind, query(params)?.service)?;
    let (k, s) = (kind.clone(), service.clone());
    let list = with_store(&state, move |conn| {
        versions::list_versions(conn, &k, s.as_deref())
    })
    .await?;
    if list.is_empty() {
        return Err(ApiError::not_found(
            "template_not_found",
            format!("template `{kind}` has no versions for this service"),
        ));
    }
    Ok(Json(
        json!({ "kind": kind, "service": service, "versions": list }),
    ))
}

/// Saves a new version of a key; `activate: true` also makes it the active one.
#[utoipa::path(post, path = "/v1/templates/{kind}/versions",
    params(("kind" = String, Path), ("service" = Option<String>, Query)),
    request_body = SaveRequest,
    responses(
        (status = 201, description = "The saved version"),
        (status = 422, description = "Unknown kind, service or variable, or invalid syntax", body = ErrorBody)))]
pub async fn save_version(
    principal: Principal,
    State(state): State<AppState>,
    Path(kind): Path<String>,
    params: Result<Query<KeyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin])?;
    let service = key(&state, &kind, query(params)?.service)?;
    let request: SaveRequest = parse_json(&headers, &body, &SAVE_FIELDS)?;
    checks::check_body(&request.body)?;
    let actor = Author::from(&principal);
    let saved = with_store(&state, move |conn| {
        versions::save_version(
            conn,
            &kind,
            service.as_deref(),
            &request.body,
            request.activate,
            &actor,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// Shows one version of a key.
#[utoipa::path(get, path = "/v1/templates/{kind}/versions/{version}",
    params(("kind" = String, Path), ("version" = i64, Path), ("service" = Option<String>, Query)),
    responses(
        (status = 200, description = "The version"),
        (status = 404, description = "No such version", body = ErrorBody)))]
pub async fn get_version(
    principal: Principal,
    State(state): State<AppState>,
    Path((kind, version)): Path<(String, String)>,
    params: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin])?;
    let service = key(&state, &kind, query(params)?.service)?;
    let version = parse_version(&version)?;
    let k = kind.clone();
    let found = with_store(&state, move |conn| {
        versions::get_version(conn, &k, service.as_deref(), version)
    })
    .await?;
    let found = found.ok_or_else(|| version_not_found(&kind, version))?;
    Ok(Json(found).into_response())
}

fn activation_body(kind: &str, activation: Activation) -> Result<Response, ApiError> {
    match activation {
        Activation::Done { version, previous } => Ok(Json(json!({
            "active": version,
            "previous_version": previous,
        }))
        .into_response()),
        Activation::NoSuchVersion => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_older_version",
            format!("template `{kind}` has no version older than the active one"),
        )),
    }
}

/// Makes one version of a key the active one.
#[utoipa::path(post, path = "/v1/templates/{kind}/versions/{version}/activate",
    params(("kind" = String, Path), ("version" = i64, Path), ("service" = Option<String>, Query)),
    responses(
        (status = 200, description = "The active version and the one active before"),
        (status = 404, description = "No such version", body = ErrorBody)))]
pub async fn activate(
    principal: Principal,
    State(state): State<AppState>,
    Path((kind, version)): Path<(String, String)>,
    params: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin])?;
    let service = key(&state, &kind, query(params)?.service)?;
    let version = parse_version(&version)?;
    let actor = Author::from(&principal);
    let k = kind.clone();
    let activation = with_store(&state, move |conn| {
        versions::activate(conn, &k, service.as_deref(), version, &actor)
    })
    .await?;
    if activation == Activation::NoSuchVersion {
        return Err(version_not_found(&kind, version));
    }
    activation_body(&kind, activation)
}

/// Makes the newest version older than the active one active again.
#[utoipa::path(post, path = "/v1/templates/{kind}/rollback",
    params(("kind" = String, Path), ("service" = Option<String>, Query)),
    responses(
        (status = 200, description = "The active version and the one active before"),
        (status = 409, description = "No older version", body = ErrorBody)))]
pub async fn rollback(
    principal: Principal,
    State(state): State<AppState>,
    Path(kind): Path<String>,
    params: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin])?;
    let service = key(&state, &kind, query(params)?.service)?;
    let actor = Author::from(&principal);
    let k = kind.clone();
    let activation = with_store(&state, move |conn| {
        versions::rollback(conn, &k, service.as_deref(), &actor)
    })
    .await?;
    activation_body(&kind, activation)
}

/// Shows the unified line difference between two versions of a key.
#[utoipa::path(get, path = "/v1/templates/{kind}/diff",
    params(("kind" = String, Path), ("service" = Option<String>, Query),
        ("from" = i64, Query), ("to" = i64, Query)),
    responses(
        (status = 200, description = "from, to and the unified diff text"),
        (status = 404, description = "No such version", body = ErrorBody)))]
pub async fn diff(
    principal: Principal,
    State(state): State<AppState>,
    Path(kind): Path<String>,
    params: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Admin])?;
    let params = query(params)?;
    let service = key(&state, &kind, params.service)?;
    let (from, to) = (params.from, params.to);
    let k = kind.clone();
    let (old, new) = with_store(&state, move |conn| {
        Ok((
            versions::get_version(conn, &k, service.as_deref(), from)?,
            versions::get_version(conn, &k, service.as_deref(), to)?,
        ))
    })
    .await?;
    let old = old.ok_or_else(|| version_not_found(&kind, from))?;
    let new = new.ok_or_else(|| version_not_found(&kind, to))?;
    let text = checks::diff(
        &old.body,
        &new.body,
        &format!("{kind} v{from}"),
        &format!("{kind} v{to}"),
    );
    Ok(Json(json!({ "from": from, "to": to, "diff": text })))
}
