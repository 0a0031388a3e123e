//! The store's side of retention and erasure: which rows are past their term, and the
//! removal of one lead with everything stored about it.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::now_rfc3339;

/// Which leads a term applies to.
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
    let mut statement = conn.prepare(&format!(
        "SELECT id FROM leads WHERE anonymised_at IS NULL {special} \
         AND julianday(created_at) < julianday(?1) ORDER BY id LIMIT ?2"
    ))?;
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

/// What [`remove_lead`] destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedLead {
    /// The categories of personal data: `message text`, the placeholder kinds, `draft`,
    /// `health data` for a special-category lead.
    pub data_categories: Vec<String>,
    /// The lead's subject columns, when set: kind and value.
    pub subject: Option<(String, String)>,
}

/// Removes lead `id` inside the caller's transaction: with `anonymise`, its text, mapping,
/// draft, external id, subject and qualification summary go and its statistics stay;
/// otherwise the row goes, and with it (by `ON DELETE CASCADE`) everything that refers to
/// it. Returns `None` when the lead does not exist or was anonymised before.
///
/// NOTE: tables that other features add with personal data about a lead (such as edited
/// replies) need `ON DELETE CASCADE`, and a line here for the anonymise method.
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
