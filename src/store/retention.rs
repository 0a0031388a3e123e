//! The store's side of retention and erasure: which rows are past their term, and the
//! removal of one lead with everything stored about it.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::now_rfc3339;

/// The leads a term applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadScope {
    /// Leads flagged as holding health data, a special category of personal data.
    SpecialCategory,
    All,
}

/// Returns up to `limit` ids of leads stored before `cutoff` (RFC 3339) that still hold
/// their text, oldest first.
pub fn due_leads(
    conn: &Connection,
    scope: LeadScope,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    let special = match scope {
        LeadScope::SpecialCategory => "AND special_category = 1",
        LeadScope::All => "",
    };
    let sql = format!(
        "SELECT id FROM leads WHERE anonymised_at IS NULL {special} \
         AND julianday(created_at) < julianday(?1) ORDER BY id LIMIT ?2"
    );
    query_ids(conn, &sql, cutoff, limit)
}

/// Runs `sql`, a query of ids whose `?1` is a cutoff time and `?2` a row limit, and returns
/// the ids.
pub(crate) fn query_ids(
    conn: &Connection,
    sql: &str,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let ids = statement
        .query_map(
            params![cutoff, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| row.get(0),
        )?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Returns up to `limit` `(draft id, lead id)` pairs of drafts created before `cutoff`.
pub fn due_drafts(
    conn: &Connection,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT id, lead_id FROM drafts WHERE julianday(created_at) < julianday(?1) \
         ORDER BY id LIMIT ?2",
    )?;
    let rows = statement
        .query_map(
            params![cutoff, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deletes draft `id`; returns whether it existed.
pub fn delete_draft(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM drafts WHERE id = ?1", params![id])? > 0)
}

/// The data [`remove_lead`] destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedLead {
    /// The categories of personal data: `message text`, the placeholder kinds, `draft`,
    /// `health data` for a special-category lead.
    pub data_categories: Vec<String>,
    /// The lead's subject columns, when set: kind and value.
    pub subject: Option<(String, String)>,
}

/// Removes lead `id` inside the caller's transaction. With `anonymise`, its text, mapping,
/// draft (with its edit, rejection reason and reply), external id, subject and
/// qualification summary go and its statistics stay. Otherwise the row goes, and
/// `ON DELETE CASCADE` removes the rows that refer to it: mapping, qualification, draft,
/// reply and webhook delivery. Returns `None` when the lead does not exist or was
/// anonymised before.
///
/// NOTE: a table added later with personal data about a lead needs `ON DELETE CASCADE`,
/// and a line here for the anonymise method.
pub fn remove_lead(
    conn: &Connection,
    id: i64,
    anonymise: bool,
) -> Result<Option<RemovedLead>, StoreError> {
    type Row = (bool, Option<String>, Option<String>, Option<String>);
    let row: Option<Row> = conn
        .query_row(
            "SELECT special_category, subject_kind, subject, anonymised_at FROM leads \
             WHERE id = ?1",
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((special, subject_kind, subject, anonymised_at)) = row else {
        return Ok(None);
    };
    if anonymised_at.is_some() && anonymise {
        return Ok(None);
    }
    let mut categories = vec!["message text".to_string()];
    let mut statement = conn
        .prepare("SELECT DISTINCT kind FROM redaction_mappings WHERE lead_id = ?1 ORDER BY kind")?;
    let kinds = statement
        .query_map(params![id], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    categories.extend(kinds);
    let has_draft: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM drafts WHERE lead_id = ?1)",
        params![id],
        |row| row.get(0),
    )?;
    if has_draft {
        categories.push("draft".to_string());
    }
    let has_reply: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM replies WHERE lead_id = ?1)",
        params![id],
        |row| row.get(0),
    )?;
    if has_reply {
        categories.push("reply".to_string());
    }
    if special {
        categories.push("health data".to_string());
    }
    if anonymise {
        conn.execute(
            "DELETE FROM redaction_mappings WHERE lead_id = ?1",
            params![id],
        )?;
        conn.execute("DELETE FROM drafts WHERE lead_id = ?1", params![id])?;
        conn.execute(
            "UPDATE qualifications SET summary = '', missing_fields = '[]' WHERE lead_id = ?1",
            params![id],
        )?;
        // The bot's message id can carry the client's phone number (WhatsApp's ids do).
        conn.execute(
            "UPDATE leads SET redacted_text = '', name_placeholder = NULL, \
             external_id = 'anonymised-' || id, subject_kind = NULL, subject = NULL, \
             anonymised_at = ?1 WHERE id = ?2",
            params![now_rfc3339(), id],
        )?;
    } else {
        conn.execute("DELETE FROM leads WHERE id = ?1", params![id])?;
    }
    let subject = subject_kind.zip(subject);
    Ok(Some(RemovedLead {
        data_categories: categories,
        subject,
    }))
}

/// Returns up to `limit` ids of consent events of a subject and purpose whose latest event
/// is a withdrawal before `cutoff` (RFC 3339), oldest first.
pub fn due_consent_events(
    conn: &Connection,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    query_ids(
        conn,
        "SELECT c.id FROM consent_log c WHERE EXISTS ( \
             SELECT 1 FROM consent_log latest \
             WHERE latest.id = (SELECT max(id) FROM consent_log m \
                                WHERE m.subject_kind = c.subject_kind AND m.subject = c.subject \
                                  AND m.purpose = c.purpose) \
               AND latest.event = 'withdrawn' \
               AND julianday(latest.at) < julianday(?1)) \
         ORDER BY c.id LIMIT ?2",
        cutoff,
        limit,
    )
}

/// Deletes consent events `ids`, keeping their hashes in `consent_log_pruned`, inside the
/// caller's transaction. Returns the distinct subjects of the deleted events as kind and
/// value.
///
/// The delete trigger allows only events whose subject and purpose ended with a withdrawal
/// before `cutoff`, and only while `retention_window` contains the cutoff.
pub fn delete_consent_events(
    conn: &Connection,
    cutoff: &str,
    ids: &[i64],
) -> Result<Vec<(String, String)>, StoreError> {
    conn.execute(
        "INSERT INTO retention_window (single, consent_cutoff) VALUES (1, ?1)",
        params![cutoff],
    )?;
    let mut subjects: Vec<(String, String)> = Vec::new();
    for id in ids {
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT subject_kind, subject FROM consent_log WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some(subject) = row else { continue };
        conn.execute(
            "INSERT INTO consent_log_pruned (id, prev_sha256, sha256, pruned_at) \
             SELECT id, prev_sha256, sha256, ?1 FROM consent_log WHERE id = ?2",
            params![now_rfc3339(), id],
        )?;
        conn.execute("DELETE FROM consent_log WHERE id = ?1", params![id])?;
        if !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    conn.execute("DELETE FROM retention_window", [])?;
    Ok(subjects)
}
