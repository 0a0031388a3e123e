//! Review of drafted replies and the replies approved for the bot.
//!
//! A draft's text is never changed: an edit is stored beside it in `edited_text`, with who
//! reviewed it and when. Approving adds a row to `replies`, whose id is the bot's polling
//! cursor, and, when a webhook is configured, a pending delivery.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::journal::{self, Entry};
use super::queries::{QualificationRow, load_mapping, load_qualification};
use super::{Author, StoreError, now_rfc3339};
use crate::redact::Mapping;

/// The statuses a draft moves through.
pub const PENDING: &str = "pending_review";
pub const APPROVED: &str = "approved";
pub const REJECTED: &str = "rejected";

/// A draft with its lead and review, as stored (placeholders, not values).
#[derive(Debug, Clone)]
pub struct DraftRecord {
    pub id: i64,
    pub lead_id: i64,
    pub channel: String,
    pub status: String,
    pub text: String,
    pub edited_text: Option<String>,
    pub template_kind: String,
    pub template_version: i64,
    pub template_service: Option<String>,
    pub reject_reason: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<String>,
    pub created_at: String,
    pub lead_text: String,
    pub special_category: bool,
    pub qualification: Option<QualificationRow>,
    pub mapping: Mapping,
}

/// An approved reply, as stored (placeholders, not values).
#[derive(Debug, Clone)]
pub struct ReplyRecord {
    pub id: i64,
    pub draft_id: i64,
    pub lead_id: i64,
    pub channel: String,
    pub external_id: String,
    pub text: String,
    pub edited: bool,
    pub approved_at: String,
    pub mapping: Mapping,
}

/// The outcome of [`approve`] and [`reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Approved with this reply id, or rejected (reply id `None`).
    Done {
        reply_id: Option<i64>,
    },
    NotFound,
    /// The draft was reviewed before; its status is given.
    AlreadyReviewed {
        status: String,
    },
}

const DRAFT_COLUMNS: &str = "d.id, d.lead_id, l.channel, d.status, d.text, d.edited_text, \
     d.template_kind, d.template_version, d.template_service, d.reject_reason, d.reviewed_by, \
     d.reviewed_at, d.created_at, l.redacted_text, l.special_category";

fn read_draft(row: &Row<'_>) -> rusqlite::Result<DraftRecord> {
    Ok(DraftRecord {
        id: row.get(0)?,
        lead_id: row.get(1)?,
        channel: row.get(2)?,
        status: row.get(3)?,
        text: row.get(4)?,
        edited_text: row.get(5)?,
        template_kind: row.get(6)?,
        template_version: row.get(7)?,
        template_service: row.get(8)?,
        reject_reason: row.get(9)?,
        reviewed_by: row.get(10)?,
        reviewed_at: row.get(11)?,
        created_at: row.get(12)?,
        lead_text: row.get(13)?,
        special_category: row.get(14)?,
        qualification: None,
        mapping: Mapping::default(),
    })
}

fn complete(conn: &Connection, mut draft: DraftRecord) -> Result<DraftRecord, StoreError> {
    draft.qualification = load_qualification(conn, draft.lead_id)?;
    draft.mapping = load_mapping(conn, draft.lead_id)?;
    Ok(draft)
}

/// Returns up to `limit` drafts with `status` and an id above `after_id`, oldest first.
pub fn list_drafts(
    conn: &Connection,
    status: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<DraftRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {DRAFT_COLUMNS} FROM drafts d JOIN leads l ON l.id = d.lead_id \
         WHERE d.status = ?1 AND d.id > ?2 ORDER BY d.id LIMIT ?3"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let drafts = statement
        .query_map(params![status, after_id, limit], read_draft)?
        .collect::<Result<Vec<_>, _>>()?;
    drafts.into_iter().map(|d| complete(conn, d)).collect()
}

/// Returns draft `id`, or `None` when it does not exist.
pub fn load_draft(conn: &Connection, id: i64) -> Result<Option<DraftRecord>, StoreError> {
    let draft = conn
        .query_row(
            &format!(
                "SELECT {DRAFT_COLUMNS} FROM drafts d JOIN leads l ON l.id = d.lead_id \
                 WHERE d.id = ?1"
            ),
            params![id],
            read_draft,
        )
        .optional()?;
    draft.map(|d| complete(conn, d)).transpose()
}

/// Returns the status of draft `id` inside a transaction that is about to change it.
fn draft_status(conn: &Connection, id: i64) -> Result<Option<(String, i64)>, StoreError> {
    let found = conn
        .query_row(
            "SELECT status, lead_id FROM drafts WHERE id = ?1",
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(found)
}

/// Approves a pending draft, with `edited_text` (placeholder form) when staff changed it,
/// and adds the reply; with `queue_webhook` also a pending webhook delivery.
pub fn approve(
    conn: &mut Connection,
    id: i64,
    edited_text: Option<&str>,
    actor: &Author,
    queue_webhook: bool,
) -> Result<Review, StoreError> {
    let tx = conn.transaction()?;
    let Some((status, lead_id)) = draft_status(&tx, id)? else {
        return Ok(Review::NotFound);
    };
    if status != PENDING {
        return Ok(Review::AlreadyReviewed { status });
    }
    let now = now_rfc3339();
    tx.execute(
        "UPDATE drafts SET status = ?1, edited_text = ?2, reviewed_by = ?3, \
         reviewed_key_id = ?4, reviewed_at = ?5 WHERE id = ?6",
        params![APPROVED, edited_text, actor.name, actor.key_id(), now, id],
    )?;
    tx.execute(
        "UPDATE leads SET status = ?1 WHERE id = ?2",
        params![APPROVED, lead_id],
    )?;
    tx.execute(
        "INSERT INTO replies (draft_id, lead_id, text, edited, approved_at) \
         SELECT id, lead_id, ifnull(edited_text, text), edited_text IS NOT NULL, ?1 \
         FROM drafts WHERE id = ?2",
        params![now, id],
    )?;
    let reply_id = tx.last_insert_rowid();
    if queue_webhook {
        super::webhooks::queue(&tx, reply_id)?;
    }
    let fields = serde_json::json!({
        "draft_id": id,
        "reply_id": reply_id,
        "edited": edited_text.is_some(),
    });
    journal::append_action(&tx, "draft_approved", actor.actor, Some(lead_id), fields)?;
    tx.commit()?;
    Ok(Review::Done {
        reply_id: Some(reply_id),
    })
}

/// Rejects a pending draft with a reason (placeholder form); nothing goes to the bot.
pub fn reject(
    conn: &mut Connection,
    id: i64,
    reason: &str,
    actor: &Author,
) -> Result<Review, StoreError> {
    let tx = conn.transaction()?;
    let Some((status, lead_id)) = draft_status(&tx, id)? else {
        return Ok(Review::NotFound);
    };
    if status != PENDING {
        return Ok(Review::AlreadyReviewed { status });
    }
    tx.execute(
        "UPDATE drafts SET status = ?1, reject_reason = ?2, reviewed_by = ?3, \
         reviewed_key_id = ?4, reviewed_at = ?5 WHERE id = ?6",
        params![
            REJECTED,
            reason,
            actor.name,
            actor.key_id(),
            now_rfc3339(),
            id
        ],
    )?;
    tx.execute(
        "UPDATE leads SET status = ?1 WHERE id = ?2",
        params![REJECTED, lead_id],
    )?;
    let fields = serde_json::json!({
        "draft_id": id,
        "reason_bytes": reason.len(),
    });
    journal::append_action(&tx, "draft_rejected", actor.actor, Some(lead_id), fields)?;
    tx.commit()?;
    Ok(Review::Done { reply_id: None })
}

const REPLY_COLUMNS: &str =
    "r.id, r.draft_id, r.lead_id, l.channel, l.external_id, r.text, r.edited, r.approved_at";

fn read_reply(row: &Row<'_>) -> rusqlite::Result<ReplyRecord> {
    Ok(ReplyRecord {
        id: row.get(0)?,
        draft_id: row.get(1)?,
        lead_id: row.get(2)?,
        channel: row.get(3)?,
        external_id: row.get(4)?,
        text: row.get(5)?,
        edited: row.get(6)?,
        approved_at: row.get(7)?,
        mapping: Mapping::default(),
    })
}

/// Returns up to `limit` replies with an id above `since`, in id order; with `key_id`,
/// only the replies to leads that key created.
pub fn replies_since(
    conn: &Connection,
    since: i64,
    limit: usize,
    key_id: Option<i64>,
) -> Result<Vec<ReplyRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {REPLY_COLUMNS} FROM replies r JOIN leads l ON l.id = r.lead_id \
         WHERE r.id > ?1 AND (?3 IS NULL OR l.key_id = ?3) ORDER BY r.id LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut replies = statement
        .query_map(params![since, limit, key_id], read_reply)?
        .collect::<Result<Vec<_>, _>>()?;
    for reply in &mut replies {
        reply.mapping = load_mapping(conn, reply.lead_id)?;
    }
    Ok(replies)
}

/// Returns reply `id`, or `None` when it does not exist.
pub fn load_reply(conn: &Connection, id: i64) -> Result<Option<ReplyRecord>, StoreError> {
    let reply = conn
        .query_row(
            &format!(
                "SELECT {REPLY_COLUMNS} FROM replies r JOIN leads l ON l.id = r.lead_id \
                 WHERE r.id = ?1"
            ),
            params![id],
            read_reply,
        )
        .optional()?;
    let Some(mut reply) = reply else {
        return Ok(None);
    };
    reply.mapping = load_mapping(conn, reply.lead_id)?;
    Ok(Some(reply))
}

/// Writes a journal entry for a read of a lead's personal data: the names of the fields
/// shown with the client's values filled in, and which placeholder kinds those values
/// were, never the values.
pub fn journal_read(
    conn: &Connection,
    action: &str,
    lead_id: i64,
    fields: &[&str],
    shown: &[&str],
    actor: &Author,
) -> Result<(), StoreError> {
    let mut entry = Entry::new(action, actor.actor);
    entry.lead_id = Some(lead_id);
    entry.personal_fields = fields;
    entry.details = serde_json::json!({ "shown": shown });
    journal::append(conn, &entry)?;
    Ok(())
}
