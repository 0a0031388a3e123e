//! The processing journal: who did what to which lead's or subject's personal data, and when.
//!
//! Rows are append-only. Triggers reject every UPDATE and every DELETE except the retention
//! job's deletion of rows past the journal's term (see [`delete_before`]). A row contains ids,
//! field names, counts and labels, never personal data itself.

use rusqlite::{Connection, params, params_from_iter, types::Value as SqlValue};
use serde::Serialize;

use super::keys::Role;
use super::{StoreError, now_rfc3339};

/// The performer of a journaled action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The holder of an API key.
    Key { id: i64, role: Role },
    /// The server itself, such as the pipeline or the retention job inside `serve`.
    System,
    /// A person at the command line of the host.
    Cli,
}

impl From<&super::keys::Principal> for Actor {
    fn from(principal: &super::keys::Principal) -> Actor {
        Actor::Key {
            id: principal.key_id,
            role: principal.role,
        }
    }
}

impl Actor {
    pub fn key_id(self) -> Option<i64> {
        match self {
            Actor::Key { id, .. } => Some(id),
            Actor::System | Actor::Cli => None,
        }
    }

    /// Returns the stored role: the key's role, `system` or `cli`.
    pub fn role_name(self) -> &'static str {
        match self {
            Actor::Key { role, .. } => role.as_str(),
            Actor::System => "system",
            Actor::Cli => "cli",
        }
    }

    /// Returns a description for a destruction act, such as `key 3 (admin)`.
    pub fn describe(self) -> String {
        match self {
            Actor::Key { id, role } => format!("key {id} ({role})"),
            Actor::System => "retention job".to_string(),
            Actor::Cli => "command line".to_string(),
        }
    }
}

/// One journal row to append.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub action: &'a str,
    pub actor: Actor,
    pub lead_id: Option<i64>,
    pub subject_id: Option<i64>,
    /// Names of the personal-data fields read or changed, such as `draft.text`.
    pub personal_fields: &'a [&'a str],
    /// Ids, counts and labels; never personal data.
    pub details: serde_json::Value,
}

impl<'a> Entry<'a> {
    pub fn new(action: &'a str, actor: Actor) -> Entry<'a> {
        Entry {
            action,
            actor,
            lead_id: None,
            subject_id: None,
            personal_fields: &[],
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// Appends a row and returns its id.
pub fn append(conn: &Connection, entry: &Entry<'_>) -> Result<i64, StoreError> {
    let fields = serde_json::to_string(entry.personal_fields).map_err(|e| StoreError::Corrupt {
        column: "personal_fields",
        message: e.to_string(),
    })?;
    conn.execute(
        "INSERT INTO journal (at, action, lead_id, key_id, role, subject_id, personal_fields, \
         fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            now_rfc3339(),
            entry.action,
            entry.lead_id,
            entry.actor.key_id(),
            entry.actor.role_name(),
            entry.subject_id,
            fields,
            entry.details.to_string(),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Appends a row of `action` by `actor` about lead `lead_id`, with `details` (ids, counts and
/// labels only), and returns its id.
pub fn append_action(
    conn: &Connection,
    action: &str,
    actor: Actor,
    lead_id: Option<i64>,
    details: serde_json::Value,
) -> Result<i64, StoreError> {
    let mut entry = Entry::new(action, actor);
    entry.lead_id = lead_id;
    entry.details = details;
    append(conn, &entry)
}

/// A stored journal row.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JournalRow {
    pub id: i64,
    /// RFC 3339 UTC time of the action.
    pub at: String,
    pub action: String,
    /// The API key that acted; `null` for the server itself and the command line.
    pub key_id: Option<i64>,
    /// `bot`, `staff`, `admin`, `system` or `cli`; `null` for rows older than the role column.
    pub role: Option<String>,
    pub lead_id: Option<i64>,
    /// The pseudonymous subject id; see `subjects` in the database.
    pub subject_id: Option<i64>,
    /// Names of the personal-data fields read or changed.
    pub personal_fields: Vec<String>,
    /// Ids, counts and labels of the action.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The rows [`query`] returns. Times are RFC 3339; `from` is inclusive, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<String>,
    pub to: Option<String>,
    pub action: Option<String>,
    pub lead_id: Option<i64>,
    pub key_id: Option<i64>,
    pub subject_id: Option<i64>,
    /// Only rows with an id above this one: the cursor of the previous page.
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// Returns the rows that match `filter`, oldest first, at most `filter.limit` of them.
pub fn query(conn: &Connection, filter: &Filter) -> Result<Vec<JournalRow>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    let mut add = |condition: &str, value: SqlValue| {
        values.push(value);
        conditions.push(condition.replace('?', &format!("?{}", values.len())));
    };
    if let Some(from) = &filter.from {
        add("julianday(at) >= julianday(?)", from.clone().into());
    }
    if let Some(to) = &filter.to {
        add("julianday(at) < julianday(?)", to.clone().into());
    }
    if let Some(action) = &filter.action {
        add("action = ?", action.clone().into());
    }
    if let Some(lead_id) = filter.lead_id {
        add("lead_id = ?", lead_id.into());
    }
    if let Some(key_id) = filter.key_id {
        add("key_id = ?", key_id.into());
    }
    if let Some(subject_id) = filter.subject_id {
        add("subject_id = ?", subject_id.into());
    }
    if let Some(after_id) = filter.after_id {
        add("id > ?", after_id.into());
    }
    if conditions.is_empty() {
        conditions.push("1 = 1".to_string());
    }
    values.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
    let sql = format!(
        "SELECT id, at, action, key_id, role, lead_id, subject_id, personal_fields, fields \
         FROM journal WHERE {} ORDER BY id LIMIT ?{}",
        conditions.join(" AND "),
        values.len()
    );
    read_rows(conn, &sql, values)
}

/// Returns every row about `lead_ids` or `subject_id`, oldest first.
pub fn rows_about(
    conn: &Connection,
    lead_ids: &[i64],
    subject_id: Option<i64>,
) -> Result<Vec<JournalRow>, StoreError> {
    let mut values: Vec<SqlValue> = lead_ids.iter().map(|id| SqlValue::from(*id)).collect();
    let placeholders = (1..=lead_ids.len())
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    values.push(subject_id.map_or(SqlValue::Null, SqlValue::from));
    let sql = format!(
        "SELECT id, at, action, key_id, role, lead_id, subject_id, personal_fields, fields \
         FROM journal WHERE lead_id IN ({placeholders}) OR subject_id = ?{} ORDER BY id",
        values.len()
    );
    read_rows(conn, &sql, values)
}

fn read_rows(
    conn: &Connection,
    sql: &str,
    values: Vec<SqlValue>,
) -> Result<Vec<JournalRow>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let raw = statement
        .query_map(params_from_iter(values), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, Option<i64>>(6)?,
                row.get::<_, String>(7)?,
                row.get::<_, String>(8)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(
            |(id, at, action, key_id, role, lead_id, subject_id, fields, details)| {
                Ok(JournalRow {
                    id,
                    at,
                    action,
                    key_id,
                    role,
                    lead_id,
                    subject_id,
                    personal_fields: serde_json::from_str(&fields).map_err(|e| {
                        StoreError::Corrupt {
                            column: "personal_fields",
                            message: e.to_string(),
                        }
                    })?,
                    details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt {
                        column: "fields",
                        message: e.to_string(),
                    })?,
                })
            },
        )
        .collect()
}

/// Returns the ids of up to `limit` rows older than `cutoff` (RFC 3339), oldest first.
pub fn ids_before(conn: &Connection, cutoff: &str, limit: usize) -> Result<Vec<i64>, StoreError> {
    super::retention::query_ids(
        conn,
        "SELECT id FROM journal WHERE julianday(at) < julianday(?1) ORDER BY id LIMIT ?2",
        cutoff,
        limit,
    )
}

/// Deletes the rows `ids`, all older than `cutoff`, inside the caller's transaction.
///
/// The delete triggers allow it only while `retention_window` contains the cutoff, so the
/// window row is written first and removed before the transaction ends.
pub fn delete_before(conn: &Connection, cutoff: &str, ids: &[i64]) -> Result<usize, StoreError> {
    conn.execute(
        "INSERT INTO retention_window (single, journal_cutoff) VALUES (1, ?1)",
        params![cutoff],
    )?;
    let mut deleted = 0;
    for id in ids {
        deleted += conn.execute("DELETE FROM journal WHERE id = ?1", params![id])?;
    }
    conn.execute("DELETE FROM retention_window", [])?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        crate::store::temporary_store()
    }

    #[test]
    fn rows_cannot_change_or_vanish() -> Result<(), StoreError> {
        let (_dir, store) = store();
        let id = store.call_blocking(|c| append(c, &Entry::new("lead_read", Actor::Cli)))?;
        let update = store.call_blocking(|c| {
            Ok(c.execute("UPDATE journal SET action = 'x' WHERE id = ?1", [id])?)
        });
        assert!(update.is_err(), "an update was accepted");
        let delete =
            store.call_blocking(|c| Ok(c.execute("DELETE FROM journal WHERE id = ?1", [id])?));
        assert!(delete.is_err(), "a delete was accepted");
        // Inside a retention window, only rows older than its cutoff may go.
        let early = store.call_blocking(|c| {
            let tx = c.transaction()?;
            delete_before(&tx, "2000-01-01T00:00:00Z", &[id])
        });
        assert!(early.is_err(), "a row younger than the cutoff was deleted");
        let deleted = store.call_blocking(|c| {
            let tx = c.transaction()?;
            let deleted = delete_before(&tx, "2999-01-01T00:00:00Z", &[id])?;
            tx.commit()?;
            Ok(deleted)
        })?;
        assert_eq!(deleted, 1);
        let window: i64 = store.call_blocking(|c| {
            Ok(c.query_row("SELECT count(*) FROM retention_window", [], |r| r.get(0))?)
        })?;
        assert_eq!(window, 0, "the retention window outlived its transaction");
        Ok(())
    }

    #[test]
    fn filters_and_cursor() -> Result<(), StoreError> {
        let (_dir, store) = store();
        let key = Actor::Key {
            id: 7,
            role: Role::Admin,
        };
        store.call_blocking(|c| {
            for lead in 1..=3 {
                let mut entry = Entry::new("lead_read", key);
                entry.lead_id = Some(lead);
                entry.personal_fields = &["draft.text"];
                append(c, &entry)?;
            }
            append(c, &Entry::new("key_created", Actor::Cli))?;
            Ok(())
        })?;
        let page = |after_id| Filter {
            action: Some("lead_read".into()),
            after_id,
            limit: 2,
            ..Filter::default()
        };
        let first = store.call_blocking(|c| query(c, &page(None)))?;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].role.as_deref(), Some("admin"));
        assert_eq!(first[0].personal_fields, vec!["draft.text".to_string()]);
        let second = store.call_blocking(|c| query(c, &page(Some(first[1].id))))?;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].lead_id, Some(3));
        let by_key = Filter {
            key_id: Some(7),
            lead_id: Some(2),
            limit: 10,
            ..Filter::default()
        };
        assert_eq!(store.call_blocking(|c| query(c, &by_key))?.len(), 1);
        let future = Filter {
            from: Some("2999-01-01T00:00:00Z".into()),
            limit: 10,
            ..Filter::default()
        };
        assert!(store.call_blocking(|c| query(c, &future))?.is_empty());
        Ok(())
    }
}
