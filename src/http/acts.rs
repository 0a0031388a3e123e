//! `GET /v1/acts` and `GET /v1/acts/{id}`: destruction acts.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::auth::{Principal, Role};
use crate::store::acts::{self, Act};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

/// A page of acts.
#[derive(Serialize, ToSchema)]
pub struct ActPage {
    pub acts: Vec<Act>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

/// Returns destruction acts, oldest first. Role: admin.
#[utoipa::path(
    get,
    path = "/v1/acts",
    params(
        ("limit" = Option<i64>, Query, description = "Acts per page, 1 to 500; 50 by default"),
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of acts", body = ActPage),
        (status = 400, description = "An unknown or invalid parameter", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
    )
)]
pub async fn list_acts(
    principal: Principal,
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ActPage>, ApiError> {
    principal.require(&[Role::Admin])?;
    let params = Params::read(query, &["limit", "cursor"])?;
    let limit = params
        .integer("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let after_id = params.integer("cursor", 0, i64::MAX)?.unwrap_or(0);
    let page_size = usize::try_from(limit).unwrap_or(1);
    let list = state
        .pipeline
        .store
        .call(move |conn| acts::list(conn, after_id, page_size))
        .await?;
    let next_cursor = if list.len() == page_size {
        list.last().map(|act| act.id)
    } else {
        None
    };
    Ok(Json(ActPage {
        acts: list,
        next_cursor,
    }))
}

/// Returns one act as JSON, or as plain text for printing with `?format=text`. Role: admin.
#[utoipa::path(
    get,
    path = "/v1/acts/{id}",
    params(
        ("id" = i64, Path, description = "The act id"),
        ("format" = Option<String>, Query, description = "`json` (default) or `text`"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The act", body = Act),
        (status = 400, description = "An invalid id or format", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
        (status = 404, description = "No such act", body = ErrorBody),
    )
)]
pub async fn get_act(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin])?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_act_id",
            "the act id in the path must be an integer",
        )
    })?;
    let params = Params::read(query, &["format"])?;
    let text = match params.get("format") {
        None | Some("json") => false,
        Some("text") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`format` must be `json` or `text`",
            ));
        }
    };
    let act = state
        .pipeline
        .store
        .call(move |conn| acts::load(conn, id))
        .await?
        .ok_or_else(|| ApiError::not_found("act_not_found", format!("act {id} does not exist")))?;
    if text {
        let body = crate::compliance::acts::to_text(&act);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    Ok(Json(act).into_response())
}
