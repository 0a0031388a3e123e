//! The review queue: the oldest pending draft in full with its forms, and the other
//! pending drafts listed without personal data.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::session::SignedIn;
use super::{UiError, form, render, viewer};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::drafts::approve_draft;
use crate::review::{self, DraftView};
use crate::store::Author;
use crate::store::review::{self as queries, PENDING};

/// The maximum number of pending drafts the queue lists.
const QUEUE_LIMIT: usize = 200;
const REVIEWERS: [Role; 2] = [Role::Staff, Role::Admin];

/// A pending draft in the queue list: ids and labels only.
#[derive(Serialize)]
struct QueueItem {
    draft_id: i64,
    channel: String,
    service: String,
    intent: String,
    urgency: String,
    created_at: String,
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

async fn queue_items(state: &AppState) -> Result<Vec<QueueItem>, UiError> {
    let drafts = state
        .pipeline
        .store
        .call(|conn| queries::list_drafts(conn, PENDING, 0, QUEUE_LIMIT))
        .await?;
    let items = drafts
        .into_iter()
        .map(|draft| {
            let q = draft.qualification.as_ref();
            let label = |f: fn(&crate::store::QualificationRow) -> &String| {
                q.map(|q| f(q).clone()).unwrap_or_default()
            };
            QueueItem {
                draft_id: draft.id,
                channel: draft.channel.clone(),
                service: label(|q| &q.service),
                intent: label(|q| &q.intent),
                urgency: label(|q| &q.urgency),
                created_at: draft.created_at.clone(),
            }
        })
        .collect();
    Ok(items)
}

fn page(
    signed_in: &SignedIn,
    pending: Vec<QueueItem>,
    current: Option<DraftView>,
    notice: Option<&str>,
) -> Response {
    let status_names = std::collections::BTreeMap::from([
        ("pending_review", "ждёт проверки"),
        ("approved", "одобрен"),
        ("rejected", "отклонён"),
    ]);
    let context = minijinja::context! {
        principal => viewer(&signed_in.principal),
        csrf => signed_in.csrf_token,
        pending => pending,
        current => current,
        notice => notice,
        status_names => status_names,
    };
    render(StatusCode::OK, "drafts.html", context)
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "approved" => Some("Ответ одобрен и передан боту."),
        "edited" => Some("Исправленный ответ одобрен и передан боту."),
        "rejected" => Some("Черновик отклонён."),
        _ => None,
    }
}

/// Shows the queue with the oldest pending draft in full.
pub async fn queue(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(done): Query<Done>,
) -> Result<Response, UiError> {
    signed_in.require(&REVIEWERS)?;
    let pending = queue_items(&state).await?;
    let current = match pending.first() {
        Some(first) => Some(
            review::get_draft(
                &state.pipeline.store,
                first.draft_id,
                Author::from(&signed_in.principal),
                "ui_draft_read",
            )
            .await?,
        ),
        None => None,
    };
    Ok(page(
        &signed_in,
        pending,
        current,
        notice(done.done.as_deref()),
    ))
}

/// Shows one draft in full, whatever its status.
pub async fn one(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    signed_in.require(&REVIEWERS)?;
    let id = draft_id(&id)?;
    let current = review::get_draft(
        &state.pipeline.store,
        id,
        Author::from(&signed_in.principal),
        "ui_draft_read",
    )
    .await?;
    let pending = queue_items(&state).await?;
    Ok(page(&signed_in, pending, Some(current), None))
}

fn draft_id(text: &str) -> Result<i64, UiError> {
    text.parse()
        .map_err(|_| UiError::new(StatusCode::NOT_FOUND, "Такого черновика нет."))
}

#[derive(Deserialize)]
pub struct ApproveForm {
    csrf: String,
    /// `approve` sends the draft as it is, `edit` sends `text`.
    action: String,
    text: Option<String>,
}

/// Approves a draft as drafted or as edited in the form.
pub async fn approve(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    submitted: Result<Form<ApproveForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    signed_in.check_csrf(&submitted.csrf)?;
    signed_in.require(&REVIEWERS)?;
    let id = draft_id(&id)?;
    let (text, done) = match submitted.action.as_str() {
        "approve" => (None, "approved"),
        "edit" => (submitted.text, "edited"),
        _ => return Err(UiError::bad_form()),
    };
    approve_draft(&state, id, text, Author::from(&signed_in.principal)).await?;
    Ok(Redirect::to(&format!("/ui/drafts?done={done}")).into_response())
}

#[derive(Deserialize)]
pub struct RejectForm {
    csrf: String,
    reason: String,
}

/// Rejects a draft with the reason from the form.
pub async fn reject(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    submitted: Result<Form<RejectForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    signed_in.check_csrf(&submitted.csrf)?;
    signed_in.require(&REVIEWERS)?;
    let id = draft_id(&id)?;
    review::reject(
        &state.pipeline.store,
        id,
        submitted.reason,
        Author::from(&signed_in.principal),
    )
    .await?;
    Ok(Redirect::to("/ui/drafts?done=rejected").into_response())
}
