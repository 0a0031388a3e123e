//! Destruction acts: the record of what was destroyed, whose, when, how and by which rule.
//!
//! An act contains ids, category names and rule texts, never the destroyed values. Its rows
//! cannot be changed or deleted; only `completed_at` is set, once, when the run that wrote
//! it finishes. A retention run that stopped half way leaves its act open, and the next run
//! adds its items to that act.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{StoreError, now_rfc3339};

/// The origin of an act: the scheduled retention job or a subject's erase request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    Retention,
    SubjectErase,
}

impl ActKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActKind::Retention => "retention",
            ActKind::SubjectErase => "subject_erase",
        }
    }
}

/// The method of destruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Deleted,
    Anonymised,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Deleted => "deleted",
            Method::Anonymised => "anonymised",
        }
    }
}

/// One batch of destroyed data of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActItem {
    /// RFC 3339 UTC time the batch was committed.
    pub at: String,
    /// The rule's name, such as `leads_term`.
    pub rule: String,
    /// The reason the data was due, such as "leads stored more than 365 days".
    pub reason: String,
    /// The kind of records destroyed: `leads`, `drafts`, `journal`, `subjects` or `consent_log`.
    pub category: String,
    /// The categories of personal data, such as `message text` or `PHONE`.
    pub data_categories: Vec<String>,
    /// `deleted` or `anonymised`.
    pub method: String,
    pub lead_ids: Vec<i64>,
    /// Pseudonymous subject ids.
    pub subject_ids: Vec<i64>,
    /// Ids of rows that belong to no lead, such as journal rows.
    pub record_ids: Vec<i64>,
    /// The number of records destroyed.
    pub count: i64,
}

/// A destruction act with its items.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Act {
    pub id: i64,
    /// `retention` or `subject_erase`.
    pub kind: String,
    /// The operator of personal data, from the configuration.
    pub operator: String,
    /// `retention job`, `command line` or `key N (admin)`.
    pub performed_by: String,
    pub started_at: String,
    /// `null` while the run goes on, or after it stopped half way.
    pub completed_at: Option<String>,
    pub items: Vec<ActItem>,
}

/// Starts an act and returns its id.
pub fn open(
    conn: &Connection,
    kind: ActKind,
    operator: &str,
    performed_by: &str,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO destruction_acts (kind, operator, performed_by, started_at) \
         VALUES (?1, ?2, ?3, ?4)",
        params![kind.as_str(), operator, performed_by, now_rfc3339()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Returns the id of the newest retention act that was never completed, if any.
pub fn unfinished_retention(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM destruction_acts WHERE kind = 'retention' AND completed_at IS NULL \
             ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

fn to_json(column: &'static str, value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

/// Adds a batch to act `act_id`; `item.at` is replaced by the current time.
pub fn add_item(conn: &Connection, act_id: i64, item: &ActItem) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO destruction_act_items (act_id, at, rule, reason, category, \
         data_categories, method, lead_ids, subject_ids, record_ids, count) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            act_id,
            now_rfc3339(),
            item.rule,
            item.reason,
            item.category,
            to_json("data_categories", &item.data_categories)?,
            item.method,
            to_json("lead_ids", &item.lead_ids)?,
            to_json("subject_ids", &item.subject_ids)?,
            to_json("record_ids", &item.record_ids)?,
            item.count,
        ],
    )?;
    Ok(())
}

/// Marks act `act_id` complete.
pub fn complete(conn: &Connection, act_id: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE destruction_acts SET completed_at = ?1 WHERE id = ?2 AND completed_at IS NULL",
        params![now_rfc3339(), act_id],
    )?;
    Ok(())
}

fn load_items(conn: &Connection, act_id: i64) -> Result<Vec<ActItem>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT at, rule, reason, category, data_categories, method, lead_ids, subject_ids, \
         record_ids, count FROM destruction_act_items WHERE act_id = ?1 ORDER BY id",
    )?;
    let rows = statement
        .query_map(params![act_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, String>(7)?,
                row.get::<_, String>(8)?,
                row.get::<_, i64>(9)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(at, rule, reason, category, data, method, leads, subjects, records, count)| {
                Ok(ActItem {
                    at,
                    rule,
                    reason,
                    category,
                    data_categories: from_json("data_categories", &data)?,
                    method,
                    lead_ids: from_json("lead_ids", &leads)?,
                    subject_ids: from_json("subject_ids", &subjects)?,
                    record_ids: from_json("record_ids", &records)?,
                    count,
                })
            },
        )
        .collect()
}

type ActHeader = (i64, String, String, String, String, Option<String>);

fn header(row: &rusqlite::Row<'_>) -> rusqlite::Result<ActHeader> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn with_items(conn: &Connection, header: ActHeader) -> Result<Act, StoreError> {
    let (id, kind, operator, performed_by, started_at, completed_at) = header;
    Ok(Act {
        id,
        kind,
        operator,
        performed_by,
        started_at,
        completed_at,
        items: load_items(conn, id)?,
    })
}

const ACT_COLUMNS: &str = "id, kind, operator, performed_by, started_at, completed_at";

/// Returns act `id` with its items, or `None` when it does not exist.
pub fn load(conn: &Connection, id: i64) -> Result<Option<Act>, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {ACT_COLUMNS} FROM destruction_acts WHERE id = ?1"),
            params![id],
            header,
        )
        .optional()?;
    row.map(|header| with_items(conn, header)).transpose()
}

/// Returns up to `limit` acts with ids above `after_id`, oldest first.
pub fn list(conn: &Connection, after_id: i64, limit: usize) -> Result<Vec<Act>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {ACT_COLUMNS} FROM destruction_acts WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let headers = statement
        .query_map(
            params![after_id, i64::try_from(limit).unwrap_or(i64::MAX)],
            header,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    headers
        .into_iter()
        .map(|header| with_items(conn, header))
        .collect()
}
