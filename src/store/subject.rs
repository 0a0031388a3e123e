//! Data subjects in the store: pseudonymous subject ids, the leads and consent events of a
//! subject, and scheduled erasures.
//!
//! Functions here take a subject as its kind (`phone`, `email`, `handle`) and its already
//! normalised value; normalising is the caller's work.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::queries::{QualificationRow, load_lead};
use super::{StoreError, now_rfc3339};
use crate::redact::{MappingEntry, restore, restore_draft};

/// Returns the id of the subject with this kind and value, if one is stored.
pub fn find(conn: &Connection, kind: &str, value: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM subjects WHERE kind = ?1 AND value = ?2",
            params![kind, value],
            |row| row.get(0),
        )
        .optional()?)
}

/// Returns the id of the subject with this kind and value, storing it when it is new.
pub fn find_or_insert(conn: &Connection, kind: &str, value: &str) -> Result<i64, StoreError> {
    if let Some(id) = find(conn, kind, value)? {
        return Ok(id);
    }
    conn.execute(
        "INSERT INTO subjects (kind, value, created_at) VALUES (?1, ?2, ?3)",
        params![kind, value, now_rfc3339()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Removes the value of subject `id`, keeping the id for the journal and the acts.
pub fn forget_value(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE subjects SET value = NULL, erased_at = ?1 WHERE id = ?2",
        params![now_rfc3339(), id],
    )?;
    Ok(())
}

/// A subject whose value is still stored.
pub struct StoredSubject {
    pub id: i64,
    pub kind: String,
    pub value: String,
}

/// Returns up to `limit` subjects with a stored value and an id above `after_id`.
pub fn with_values(
    conn: &Connection,
    after_id: i64,
    limit: usize,
) -> Result<Vec<StoredSubject>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT id, kind, value FROM subjects WHERE value IS NOT NULL AND id > ?1 \
         ORDER BY id LIMIT ?2",
    )?;
    let rows = statement
        .query_map(
            params![after_id, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok(StoredSubject {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    value: row.get(2)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Returns the ids of leads whose subject columns name this subject.
pub fn leads_by_subject(
    conn: &Connection,
    kind: &str,
    value: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut statement =
        conn.prepare("SELECT id FROM leads WHERE subject_kind = ?1 AND subject = ?2 ORDER BY id")?;
    let ids = statement
        .query_map(params![kind, value], |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Returns `(lead_id, original value)` of every mapping entry of placeholder kind
/// `pii_kind` (such as `PHONE`), so the caller can normalise and compare them.
pub fn mapping_values(conn: &Connection, pii_kind: &str) -> Result<Vec<(i64, String)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT lead_id, value FROM redaction_mappings WHERE kind = ?1 ORDER BY lead_id",
    )?;
    let rows = statement
        .query_map(params![pii_kind], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Returns `(placeholder kind, original value)` of lead `lead_id`'s mapping entries of the
/// kinds that can identify a subject: `PHONE`, `EMAIL` and `HANDLE`.
pub fn lead_contacts(conn: &Connection, lead_id: i64) -> Result<Vec<(String, String)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT kind, value FROM redaction_mappings \
         WHERE lead_id = ?1 AND kind IN ('PHONE', 'EMAIL', 'HANDLE') ORDER BY rowid",
    )?;
    let rows = statement
        .query_map(params![lead_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A draft of a lead and its review, with the client's values filled in.
#[derive(Debug, Clone, Serialize)]
pub struct DraftExport {
    pub text: String,
    pub template_kind: String,
    pub template_version: i64,
    /// pending_review, approved, rejected or consent_withdrawn.
    pub status: String,
    /// The reply as staff changed it before approving, when they did.
    pub edited_text: Option<String>,
    pub reject_reason: Option<String>,
    pub reviewed_at: Option<String>,
}

/// The review columns of a lead's draft: status, edited text, reason and time.
type DraftReview = (String, Option<String>, Option<String>, Option<String>);

fn draft_review(conn: &Connection, lead_id: i64) -> Result<Option<DraftReview>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT status, edited_text, reject_reason, reviewed_at FROM drafts \
             WHERE lead_id = ?1",
            params![lead_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?)
}

/// Everything stored on one lead, with the original values restored.
#[derive(Debug, Clone, Serialize)]
pub struct LeadExport {
    pub lead_id: i64,
    pub channel: String,
    pub external_id: String,
    pub status: String,
    pub received_at: Option<String>,
    pub created_at: String,
    pub special_category: bool,
    /// The message with the personal data restored.
    pub text: String,
    /// The personal data found in or sent with the message: placeholder, kind, value.
    pub personal_data: Vec<MappingEntry>,
    pub qualification: Option<QualificationRow>,
    pub draft: Option<DraftExport>,
}

/// Returns everything stored on lead `id`, or `None` when it does not exist.
pub fn export_lead(conn: &Connection, id: i64) -> Result<Option<LeadExport>, StoreError> {
    type LeadColumns = (String, String, String, Option<String>, String, bool, String);
    let row: Option<LeadColumns> = conn
        .query_row(
            "SELECT channel, external_id, status, received_at, created_at, special_category, \
             redacted_text FROM leads WHERE id = ?1",
            params![id],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                ))
            },
        )
        .optional()?;
    let Some((channel, external_id, status, received_at, created_at, special, redacted)) = row
    else {
        return Ok(None);
    };
    let Some(record) = load_lead(conn, id)? else {
        return Ok(None);
    };
    let (draft_status, edited_text, reject_reason, reviewed_at) =
        draft_review(conn, id)?.unwrap_or_default();
    let fill = |text: Option<String>| text.map(|text| restore_draft(&record.mapping, &text));
    Ok(Some(LeadExport {
        lead_id: id,
        channel,
        external_id,
        status,
        received_at,
        created_at,
        special_category: special,
        text: restore(&record.mapping, &redacted),
        draft: record.draft.map(|draft| DraftExport {
            text: restore_draft(&record.mapping, &draft.text),
            template_kind: draft.template_kind,
            template_version: draft.template_version,
            status: draft_status,
            edited_text: fill(edited_text),
            reject_reason: fill(reject_reason),
            reviewed_at,
        }),
        qualification: record.qualification,
        personal_data: record.mapping.entries,
    }))
}

/// Schedules an erasure at `due_at` of what subject `subject_id` had stored before
/// `data_before` (both RFC 3339), and returns the request id and due time. An erasure
/// already pending for the subject is kept when it is due earlier.
pub fn schedule_erasure(
    conn: &Connection,
    subject_id: i64,
    reason: &str,
    data_before: &str,
    due_at: &str,
) -> Result<(i64, String), StoreError> {
    let pending: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, due_at FROM erasure_requests WHERE subject_id = ?1 AND done_at IS NULL \
             ORDER BY julianday(due_at) LIMIT 1",
            params![subject_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((id, pending_due)) = pending {
        let earlier: bool = conn.query_row(
            "SELECT julianday(?1) <= julianday(?2)",
            params![pending_due, due_at],
            |row| row.get(0),
        )?;
        if earlier {
            return Ok((id, pending_due));
        }
    }
    conn.execute(
        "INSERT INTO erasure_requests (subject_id, reason, requested_at, data_before, due_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![subject_id, reason, now_rfc3339(), data_before, due_at],
    )?;
    Ok((conn.last_insert_rowid(), due_at.to_string()))
}

/// A scheduled erasure that is due.
pub struct DueErasure {
    pub request_id: i64,
    pub subject_id: i64,
    pub reason: String,
    /// The erasure covers what was stored before this time.
    pub data_before: String,
    pub kind: String,
    /// `None` when the subject was erased already by another request.
    pub value: Option<String>,
}

/// Returns up to `limit` pending erasures due at or before `now`, oldest first.
pub fn due_erasures(
    conn: &Connection,
    now: &str,
    limit: usize,
) -> Result<Vec<DueErasure>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT r.id, r.subject_id, r.reason, r.data_before, s.kind, s.value \
         FROM erasure_requests r \
         JOIN subjects s ON s.id = r.subject_id \
         WHERE r.done_at IS NULL AND julianday(r.due_at) <= julianday(?1) ORDER BY r.id LIMIT ?2",
    )?;
    let rows = statement
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok(DueErasure {
                    request_id: row.get(0)?,
                    subject_id: row.get(1)?,
                    reason: row.get(2)?,
                    data_before: row.get(3)?,
                    kind: row.get(4)?,
                    value: row.get(5)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Returns whether lead `id` was stored before `before` (RFC 3339).
pub fn lead_stored_before(conn: &Connection, id: i64, before: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM leads WHERE id = ?1 \
         AND julianday(created_at) < julianday(?2))",
        params![id, before],
        |row| row.get(0),
    )?)
}

/// Returns the number of erasures still pending for subject `subject_id`.
pub fn pending_erasures(conn: &Connection, subject_id: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM erasure_requests WHERE subject_id = ?1 AND done_at IS NULL",
        params![subject_id],
        |row| row.get(0),
    )?)
}

/// Marks every pending erasure of subject `subject_id` done by act `act_id` (`None` when
/// nothing was left to erase).
pub fn finish_erasures(
    conn: &Connection,
    subject_id: i64,
    act_id: Option<i64>,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE erasure_requests SET done_at = ?1, act_id = ?2 \
         WHERE subject_id = ?3 AND done_at IS NULL",
        params![now_rfc3339(), act_id, subject_id],
    )?)
}
