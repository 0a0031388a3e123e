//! `GET /v1/journal`, and the journal rows of reads of personal data through the API.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::auth::{Principal, Role};
use crate::pipeline::LeadView;
use crate::store::journal::{self, Actor, Entry, Filter, JournalRow};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
const MAX_ACTION_BYTES: usize = 64;
const PARAMETERS: [&str; 8] = [
    "from",
    "to",
    "action",
    "lead_id",
    "key_id",
    "subject_id",
    "limit",
    "cursor",
];

/// Journals that `principal` received lead `view` with the client's values filled in.
/// A view without a draft shows no personal data and is not journaled.
pub async fn lead_read(
    state: &AppState,
    principal: &Principal,
    view: &LeadView,
    via: &'static str,
) -> Result<(), ApiError> {
    if view.draft.is_none() {
        return Ok(());
    }
    let actor = Actor::from(principal);
    let lead_id = view.lead_id;
    state
        .pipeline
        .store
        .call(move |conn| {
            let mut entry = Entry::new("lead_read", actor);
            entry.lead_id = Some(lead_id);
            entry.personal_fields = &["draft.text"];
            entry.details = serde_json::json!({ "via": via });
            journal::append(conn, &entry)
        })
        .await?;
    Ok(())
}

/// A page of journal rows.
#[derive(Serialize, ToSchema)]
pub struct JournalPage {
    pub rows: Vec<JournalRow>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

/// Returns journal rows, oldest first, filtered. Role: admin.
#[utoipa::path(
    get,
    path = "/v1/journal",
    params(
        ("from" = Option<String>, Query, description = "First time to include, RFC 3339"),
        ("to" = Option<String>, Query, description = "Time to stop at (excluded), RFC 3339"),
        ("action" = Option<String>, Query, description = "Only this action, such as lead_read"),
        ("lead_id" = Option<i64>, Query, description = "Only rows about this lead"),
        ("key_id" = Option<i64>, Query, description = "Only rows of this API key"),
        ("subject_id" = Option<i64>, Query, description = "Only rows about this subject"),
        ("limit" = Option<i64>, Query, description = "Rows per page, 1 to 1000; 100 by default"),
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of rows", body = JournalPage),
        (status = 400, description = "An unknown or invalid parameter", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The key's role is not admin", body = ErrorBody),
    )
)]
pub async fn list_journal(
    principal: Principal,
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<JournalPage>, ApiError> {
    principal.require(&[Role::Admin])?;
    let params = Params::read(query, &PARAMETERS)?;
    let action = params.get("action").map(str::to_string);
    if let Some(action) = &action {
        let valid = !action.is_empty()
            && action.len() <= MAX_ACTION_BYTES
            && action.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !valid {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`action` must be 1 to {MAX_ACTION_BYTES} lower-case letters or `_`"),
            ));
        }
    }
    let limit = params
        .integer("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let filter = Filter {
        from: params.time("from")?,
        to: params.time("to")?,
        action,
        lead_id: params.integer("lead_id", 0, i64::MAX)?,
        key_id: params.integer("key_id", 0, i64::MAX)?,
        subject_id: params.integer("subject_id", 0, i64::MAX)?,
        after_id: params.integer("cursor", 0, i64::MAX)?,
        limit: usize::try_from(limit).unwrap_or(1),
    };
    let rows = state
        .pipeline
        .store
        .call(move |conn| journal::query(conn, &filter))
        .await?;
    let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if full {
        rows.last().map(|row| row.id)
    } else {
        None
    };
    Ok(Json(JournalPage { rows, next_cursor }))
}
