//! Staff review of drafted replies and the approved replies the bot collects.
//!
//! Drafts, edits and rejection reasons are stored in placeholder form. Values are filled
//! in only in what this module returns for display or delivery, and every such read of a
//! lead's personal data is written to the journal (which kinds were shown, never the
//! values). Text that staff type with the values filled in gets its known values turned
//! back into placeholders before it is stored.

use serde::Serialize;
use utoipa::ToSchema;

use crate::pipeline::QualificationView;
use crate::redact::{Mapping, replace_known, restore, restore_draft};
use crate::store::review::{self as queries, DraftRecord, ReplyRecord, Review};
use crate::store::{Author, Store, StoreError};

/// The largest edited reply or rejection reason accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("draft {id} does not exist")]
    NotFound { id: i64 },

    #[error("draft {id} was already reviewed (status {status})")]
    AlreadyReviewed { id: i64, status: String },

    #[error("the {field} is empty")]
    Empty { field: &'static str },

    #[error("the {field} has {bytes} bytes; the limit is {MAX_TEXT_BYTES} bytes")]
    TooLong { field: &'static str, bytes: usize },
}

/// A draft as staff see it: values filled in.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DraftView {
    pub draft_id: i64,
    pub lead_id: i64,
    pub channel: String,
    /// pending_review, approved or rejected.
    pub status: String,
    /// The client's message.
    pub lead_text: String,
    /// True when the message has health data, a special category of personal data.
    pub special_category: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualification: Option<QualificationView>,
    /// The reply as the template drafted it.
    pub text: String,
    /// The reply as staff changed it before approving, when they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_text: Option<String>,
    pub template_kind: String,
    pub template_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<String>,
    pub created_at: String,
}

/// An approved reply as the bot receives it: values filled in.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplyView {
    /// Increases with every approval; pass the last one seen as `since`.
    pub reply_id: i64,
    pub lead_id: i64,
    pub draft_id: i64,
    pub channel: String,
    /// The bot's id of the client's message.
    pub external_id: String,
    pub text: String,
    /// True when staff changed the drafted text.
    pub edited: bool,
    pub approved_at: String,
}

/// Returns the placeholder kinds that `texts` reveal once their values are filled in.
fn shown_kinds(mapping: &Mapping, texts: &[&str]) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = mapping
        .entries
        .iter()
        .filter(|entry| texts.iter().any(|text| text.contains(&entry.placeholder)))
        .map(|entry| entry.kind.as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// The fields of a draft view that carry the client's values, for the journal.
const DRAFT_FIELDS: [&str; 2] = ["lead.text", "draft.text"];
/// The fields of a reply that carry the client's values, for the journal.
pub const REPLY_FIELDS: [&str; 1] = ["reply.text"];

/// Fills in a stored draft for staff and returns it with the fields and placeholder kinds
/// it shows.
fn draft_view(draft: DraftRecord) -> (DraftView, Vec<&'static str>, Vec<&'static str>) {
    let fill = |text: &str| restore_draft(&draft.mapping, text);
    let mut texts = vec![draft.lead_text.as_str(), draft.text.as_str()];
    texts.extend(draft.edited_text.as_deref());
    texts.extend(draft.reject_reason.as_deref());
    let shown = shown_kinds(&draft.mapping, &texts);
    let mut fields = DRAFT_FIELDS.to_vec();
    if draft.edited_text.is_some() {
        fields.push("draft.edited_text");
    }
    if draft.reject_reason.is_some() {
        fields.push("draft.reject_reason");
    }
    let view = DraftView {
        draft_id: draft.id,
        lead_id: draft.lead_id,
        channel: draft.channel.clone(),
        status: draft.status.clone(),
        lead_text: restore(&draft.mapping, &draft.lead_text),
        special_category: draft.special_category,
        qualification: draft.qualification.clone().map(QualificationView::from_row),
        text: fill(&draft.text),
        edited_text: draft.edited_text.as_deref().map(fill),
        template_kind: draft.template_kind.clone(),
        template_version: draft.template_version,
        template_service: draft.template_service.clone(),
        reject_reason: draft.reject_reason.as_deref().map(fill),
        reviewed_by: draft.reviewed_by.clone(),
        reviewed_at: draft.reviewed_at.clone(),
        created_at: draft.created_at.clone(),
    };
    (view, fields, shown)
}

/// Fills in a stored reply for the bot and returns it with the placeholder kinds shown.
pub fn reply_view(reply: &ReplyRecord) -> (ReplyView, Vec<&'static str>) {
    let view = ReplyView {
        reply_id: reply.id,
        lead_id: reply.lead_id,
        draft_id: reply.draft_id,
        channel: reply.channel.clone(),
        external_id: reply.external_id.clone(),
        text: restore_draft(&reply.mapping, &reply.text),
        edited: reply.edited,
        approved_at: reply.approved_at.clone(),
    };
    (view, shown_kinds(&reply.mapping, &[&reply.text]))
}

/// Returns up to `limit` drafts with `status` after draft id `after`, oldest first, and
/// journals the read of each lead's data as `action` by `actor`.
pub async fn list_drafts(
    store: &Store,
    status: &'static str,
    after: i64,
    limit: usize,
    actor: Author,
    action: &'static str,
) -> Result<Vec<DraftView>, ReviewError> {
    let views = store
        .call(move |conn| {
            let drafts = queries::list_drafts(conn, status, after, limit)?;
            let mut views = Vec::with_capacity(drafts.len());
            for draft in drafts {
                let (view, fields, shown) = draft_view(draft);
                queries::journal_read(conn, action, view.lead_id, &fields, &shown, &actor)?;
                views.push(view);
            }
            Ok(views)
        })
        .await?;
    Ok(views)
}

/// Returns draft `id` and journals the read as `action` by `actor`.
pub async fn get_draft(
    store: &Store,
    id: i64,
    actor: Author,
    action: &'static str,
) -> Result<DraftView, ReviewError> {
    let view = store
        .call(move |conn| {
            let Some(draft) = queries::load_draft(conn, id)? else {
                return Ok(None);
            };
            let (view, fields, shown) = draft_view(draft);
            queries::journal_read(conn, action, view.lead_id, &fields, &shown, &actor)?;
            Ok(Some(view))
        })
        .await?;
    view.ok_or(ReviewError::NotFound { id })
}

fn check_text(field: &'static str, text: &str) -> Result<(), ReviewError> {
    if text.trim().is_empty() {
        return Err(ReviewError::Empty { field });
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ReviewError::TooLong {
            field,
            bytes: text.len(),
        });
    }
    Ok(())
}

fn outcome(id: i64, review: Review) -> Result<Option<i64>, ReviewError> {
    match review {
        Review::Done { reply_id } => Ok(reply_id),
        Review::NotFound => Err(ReviewError::NotFound { id }),
        Review::AlreadyReviewed { status } => Err(ReviewError::AlreadyReviewed { id, status }),
    }
}

/// Approves draft `id`, as `edited` (values filled in, as staff saw it) when given and
/// different from the draft, and returns the reply the bot will get.
pub async fn approve(
    store: &Store,
    id: i64,
    edited: Option<String>,
    actor: Author,
    queue_webhook: bool,
) -> Result<ReplyView, ReviewError> {
    if let Some(text) = &edited {
        check_text("edited reply text", text)?;
    }
    let reply = store
        .call(move |conn| {
            let Some(draft) = queries::load_draft(conn, id)? else {
                return Ok(Err(ReviewError::NotFound { id }));
            };
            let edited = edited
                .map(|text| replace_known(&draft.mapping, text.trim()))
                .filter(|text| *text != draft.text);
            let review = queries::approve(conn, id, edited.as_deref(), &actor, queue_webhook)?;
            let reply_id = match outcome(id, review) {
                Ok(reply_id) => reply_id,
                Err(error) => return Ok(Err(error)),
            };
            let reply = reply_id
                .map(|reply_id| queries::load_reply(conn, reply_id))
                .transpose()?
                .flatten()
                .ok_or(StoreError::Corrupt {
                    column: "replies.id",
                    message: "an approved reply is missing".to_string(),
                })?;
            Ok(Ok(reply))
        })
        .await??;
    Ok(reply_view(&reply).0)
}

/// Rejects draft `id` with `reason` (values filled in, as staff typed it).
pub async fn reject(
    store: &Store,
    id: i64,
    reason: String,
    actor: Author,
) -> Result<(), ReviewError> {
    check_text("rejection reason", &reason)?;
    store
        .call(move |conn| {
            let Some(draft) = queries::load_draft(conn, id)? else {
                return Ok(Err(ReviewError::NotFound { id }));
            };
            let reason = replace_known(&draft.mapping, reason.trim());
            let review = queries::reject(conn, id, &reason, &actor)?;
            Ok(outcome(id, review).map(|_| ()))
        })
        .await?
}

/// Returns up to `limit` replies to the leads of `actor`'s key after reply id `since` and
/// the cursor for the next call, and journals each lead's read by `actor`.
pub async fn replies(
    store: &Store,
    since: i64,
    limit: usize,
    actor: Author,
) -> Result<(Vec<ReplyView>, i64), ReviewError> {
    let views = store
        .call(move |conn| {
            let replies = queries::replies_since(conn, since, limit, actor.key_id())?;
            let mut views = Vec::with_capacity(replies.len());
            for reply in &replies {
                let (view, shown) = reply_view(reply);
                queries::journal_read(
                    conn,
                    "reply_read",
                    reply.lead_id,
                    &REPLY_FIELDS,
                    &shown,
                    &actor,
                )?;
                views.push(view);
            }
            Ok(views)
        })
        .await?;
    let next = views.last().map_or(since, |reply| reply.reply_id);
    Ok((views, next))
}
