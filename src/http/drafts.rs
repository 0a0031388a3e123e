//! Draft review for staff (`/v1/drafts`) and approved replies for the bot
//! (`GET /v1/replies`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::AppState;
use super::body::parse_optional_json;
use super::error::{ApiError, ErrorBody, parse_json};
use crate::auth::{Principal, Role};
use crate::review::{self, DraftView, ReplyView, ReviewError};
use crate::store::Author;
use crate::store::review::{APPROVED, PENDING, REJECTED};

/// The maximum number of drafts or replies one request returns.
pub const MAX_LIMIT: usize = 200;
const DEFAULT_LIMIT: usize = 50;
/// The roles that review drafts.
const REVIEWERS: &[Role] = &[Role::Staff, Role::Admin];

#[derive(Deserialize)]
pub struct DraftsQuery {
    status: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
pub struct RepliesQuery {
    since: Option<i64>,
    limit: Option<usize>,
}

/// The body of `POST /v1/drafts/{id}/approve`; without `text` the draft goes out as it is.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The reply as staff changed it, with the client's values as shown.
    text: Option<String>,
}

/// The body of `POST /v1/drafts/{id}/reject`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    reason: String,
}

fn query<T>(query: Result<Query<T>, QueryRejection>, accepted: &str) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|_| ApiError::bad_request("invalid_query", format!("invalid query: {accepted}")))
}

fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::unprocessable(
            "invalid_limit",
            format!("`limit` must be 1 to {MAX_LIMIT}"),
        )),
        n => Ok(n.min(MAX_LIMIT)),
    }
}

fn draft_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_draft_id",
            "the draft id in the path must be an integer",
        )
    })
}

/// Lists drafts by review status, oldest first.
#[utoipa::path(get, path = "/v1/drafts",
    params(
        ("status" = Option<String>, Query, description = "pending (default), approved or rejected"),
        ("after" = Option<i64>, Query, description = "Only drafts with a larger id"),
        ("limit" = Option<usize>, Query, description = "1 to 200, default 50")),
    responses(
        (status = 200, description = "drafts: the drafts with values filled in"),
        (status = 422, description = "Unknown status or invalid limit", body = ErrorBody)))]
pub async fn list_drafts(
    principal: Principal,
    State(state): State<AppState>,
    params: Result<Query<DraftsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(REVIEWERS)?;
    let params = query(params, "`status` is text, `after` and `limit` are integers")?;
    let status = match params.status.as_deref().unwrap_or("pending") {
        "pending" | "pending_review" => PENDING,
        "approved" => APPROVED,
        "rejected" => REJECTED,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_status",
                "`status` must be pending, approved or rejected",
            ));
        }
    };
    let limit = limit(params.limit)?;
    let after = params.after.unwrap_or(0);
    let actor = Author::from(&principal);
    let drafts: Vec<DraftView> = review::list_drafts(
        &state.pipeline.store,
        status,
        after,
        limit,
        actor,
        "draft_read",
    )
    .await?;
    Ok(Json(json!({ "drafts": drafts })))
}

/// Shows one draft with its lead's text, qualification and review.
#[utoipa::path(get, path = "/v1/drafts/{id}",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The draft", body = DraftView),
        (status = 404, description = "No such draft", body = ErrorBody)))]
pub async fn get_draft(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    principal.require(REVIEWERS)?;
    let id = draft_id(&id)?;
    let view = review::get_draft(
        &state.pipeline.store,
        id,
        Author::from(&principal),
        "draft_read",
    )
    .await?;
    Ok(Json(view))
}

/// Approves a pending draft, as edited when the body has `text`.
#[utoipa::path(post, path = "/v1/drafts/{id}/approve",
    params(("id" = i64, Path)),
    request_body(content = ApproveRequest, description = "Optional; `text` edits the reply"),
    responses(
        (status = 200, description = "The reply the bot gets", body = ReplyView),
        (status = 404, description = "No such draft", body = ErrorBody),
        (status = 409, description = "Already reviewed", body = ErrorBody)))]
pub async fn approve(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReplyView>, ApiError> {
    principal.require(REVIEWERS)?;
    let id = draft_id(&id)?;
    let request: ApproveRequest = parse_optional_json(&headers, &body, &["text"])?;
    let reply = approve_draft(&state, id, request.text, Author::from(&principal)).await?;
    Ok(Json(reply))
}

/// Approves draft `id` and wakes the webhook task when one runs.
pub async fn approve_draft(
    state: &AppState,
    id: i64,
    text: Option<String>,
    actor: Author,
) -> Result<ReplyView, ReviewError> {
    let webhook = state.webhook.as_ref();
    let reply = review::approve(&state.pipeline.store, id, text, actor, webhook.is_some()).await?;
    if let Some(webhook) = webhook {
        webhook.wake();
    }
    Ok(reply)
}

/// Rejects a pending draft with a reason.
#[utoipa::path(post, path = "/v1/drafts/{id}/reject",
    params(("id" = i64, Path)),
    request_body = RejectRequest,
    responses(
        (status = 200, description = "Rejected"),
        (status = 404, description = "No such draft", body = ErrorBody),
        (status = 409, description = "Already reviewed", body = ErrorBody)))]
pub async fn reject(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(REVIEWERS)?;
    let id = draft_id(&id)?;
    let request: RejectRequest = parse_json(&headers, &body, &["reason"])?;
    review::reject(
        &state.pipeline.store,
        id,
        request.reason,
        Author::from(&principal),
    )
    .await?;
    Ok(Json(json!({ "draft_id": id, "status": REJECTED })))
}

/// Returns the replies approved after reply id `since`, in approval order.
#[utoipa::path(get, path = "/v1/replies",
    params(
        ("since" = Option<i64>, Query, description = "The last reply_id seen; 0 or absent for the first call"),
        ("limit" = Option<usize>, Query, description = "1 to 200, default 50")),
    responses((status = 200, description = "replies, and next_since to pass on the next call")))]
pub async fn list_replies(
    principal: Principal,
    State(state): State<AppState>,
    params: Result<Query<RepliesQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Bot])?;
    let params = query(params, "`since` and `limit` are integers")?;
    let since = params.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::unprocessable(
            "invalid_since",
            "`since` must be 0 or a reply_id",
        ));
    }
    let limit = limit(params.limit)?;
    let (replies, next) = review::replies(
        &state.pipeline.store,
        since,
        limit,
        Author::from(&principal),
    )
    .await?;
    Ok(Json(json!({ "replies": replies, "next_since": next })))
}
