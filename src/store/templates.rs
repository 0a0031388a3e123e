//! Versions of the response templates. A key is a kind and an optional service; each save
//! adds a version that never changes afterwards (triggers in the schema reject an update
//! or delete), and one version per key is active.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::journal;
use super::{Author, StoreError, now_rfc3339};

/// One saved version of a template.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TemplateVersion {
    pub kind: String,
    pub service: Option<String>,
    pub version: i64,
    pub body: String,
    pub active: bool,
    /// The key name (or `cli`, `shipped`) that saved it.
    pub saved_by: String,
    pub saved_key_id: Option<i64>,
    pub created_at: String,
}

/// A template key with its active and newest version numbers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TemplateKey {
    pub kind: String,
    pub service: Option<String>,
    /// `None` when no version of the key is active.
    pub active_version: Option<i64>,
    pub latest_version: i64,
}

/// The outcome of [`activate`] and [`rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// `version` is active now; `previous` was active before.
    Done {
        version: TemplateVersion,
        previous: Option<i64>,
    },
    /// The key has no such version (or, for a rollback, no version older than the active
    /// one).
    NoSuchVersion,
}

const COLUMNS: &str = "kind, service, version, body, active, saved_by, saved_key_id, created_at";

fn read_version(row: &Row<'_>) -> rusqlite::Result<TemplateVersion> {
    Ok(TemplateVersion {
        kind: row.get(0)?,
        service: row.get(1)?,
        version: row.get(2)?,
        body: row.get(3)?,
        active: row.get(4)?,
        saved_by: row.get(5)?,
        saved_key_id: row.get(6)?,
        created_at: row.get(7)?,
    })
}

/// Returns every template key, ordered by kind and service.
pub fn list_keys(conn: &Connection) -> Result<Vec<TemplateKey>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT kind, service, max(CASE WHEN active = 1 THEN version END), max(version) \
         FROM response_templates GROUP BY kind, ifnull(service, '') \
         ORDER BY kind, ifnull(service, '')",
    )?;
    let keys = statement
        .query_map([], |row| {
            Ok(TemplateKey {
                kind: row.get(0)?,
                service: row.get(1)?,
                active_version: row.get(2)?,
                latest_version: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

/// Returns the versions of one key, oldest first; empty when the key has none.
pub fn list_versions(
    conn: &Connection,
    kind: &str,
    service: Option<&str>,
) -> Result<Vec<TemplateVersion>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM response_templates \
         WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '') ORDER BY version"
    ))?;
    let versions = statement
        .query_map(params![kind, service], read_version)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(versions)
}

/// Returns one version of a key, or `None` when it does not exist.
pub fn get_version(
    conn: &Connection,
    kind: &str,
    service: Option<&str>,
    version: i64,
) -> Result<Option<TemplateVersion>, StoreError> {
    let found = conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM response_templates \
                 WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '') AND version = ?3"
            ),
            params![kind, service, version],
            read_version,
        )
        .optional()?;
    Ok(found)
}

/// Returns the active version of a key, or `None` when none is active.
pub fn active_version(
    conn: &Connection,
    kind: &str,
    service: Option<&str>,
) -> Result<Option<TemplateVersion>, StoreError> {
    let found = conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM response_templates \
                 WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '') AND active = 1"
            ),
            params![kind, service],
            read_version,
        )
        .optional()?;
    Ok(found)
}

/// Saves `body` as the next version of a key (version 1 for a new key) and, when
/// `activate` is set, makes it the active one, all in one transaction.
///
/// The caller checks the kind, service and body first (`draft::templates`).
pub fn save_version(
    conn: &mut Connection,
    kind: &str,
    service: Option<&str>,
    body: &str,
    activate: bool,
    actor: &Author,
) -> Result<TemplateVersion, StoreError> {
    let tx = conn.transaction()?;
    let latest: Option<i64> = tx.query_row(
        "SELECT max(version) FROM response_templates \
         WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '')",
        params![kind, service],
        |row| row.get(0),
    )?;
    let version = latest.unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO response_templates (kind, service, version, body, active, saved_by, \
         saved_key_id, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
        params![
            kind,
            service,
            version,
            body,
            actor.name,
            actor.key_id(),
            now_rfc3339()
        ],
    )?;
    let fields = serde_json::json!({
        "kind": kind,
        "service": service,
        "version": version,
        "bytes": body.len(),
    });
    journal::append_action(&tx, "template_saved", actor.actor, None, fields)?;
    if activate {
        set_active(&tx, kind, service, version, actor)?;
    }
    let saved = get_version(&tx, kind, service, version)?.ok_or(StoreError::Corrupt {
        column: "version",
        message: "a saved template version is missing".to_string(),
    })?;
    tx.commit()?;
    Ok(saved)
}

/// Makes `version` the active version of its key and returns the version active before.
fn set_active(
    conn: &Connection,
    kind: &str,
    service: Option<&str>,
    version: i64,
    actor: &Author,
) -> Result<Option<i64>, StoreError> {
    let previous = active_version(conn, kind, service)?.map(|v| v.version);
    // Clear first: the schema allows one active version per key at any moment.
    conn.execute(
        "UPDATE response_templates SET active = 0 \
         WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '') AND active = 1",
        params![kind, service],
    )?;
    conn.execute(
        "UPDATE response_templates SET active = 1 \
         WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '') AND version = ?3",
        params![kind, service, version],
    )?;
    let fields = serde_json::json!({
        "kind": kind,
        "service": service,
        "version": version,
        "previous": previous,
    });
    journal::append_action(conn, "template_activated", actor.actor, None, fields)?;
    Ok(previous)
}

/// Makes `version` the active version of its key.
pub fn activate(
    conn: &mut Connection,
    kind: &str,
    service: Option<&str>,
    version: i64,
    actor: &Author,
) -> Result<Activation, StoreError> {
    let tx = conn.transaction()?;
    if get_version(&tx, kind, service, version)?.is_none() {
        return Ok(Activation::NoSuchVersion);
    }
    let previous = set_active(&tx, kind, service, version, actor)?;
    let version = get_version(&tx, kind, service, version)?.ok_or(StoreError::Corrupt {
        column: "version",
        message: "an activated template version is missing".to_string(),
    })?;
    tx.commit()?;
    Ok(Activation::Done { version, previous })
}

/// Makes the newest version older than the active one active again. With no version
/// active, the newest version becomes active.
pub fn rollback(
    conn: &mut Connection,
    kind: &str,
    service: Option<&str>,
    actor: &Author,
) -> Result<Activation, StoreError> {
    let target: Option<i64> = {
        let current = active_version(conn, kind, service)?.map(|v| v.version);
        conn.query_row(
            "SELECT max(version) FROM response_templates \
             WHERE kind = ?1 AND ifnull(service, '') = ifnull(?2, '') AND version < ?3",
            params![kind, service, current.unwrap_or(i64::MAX)],
            |row| row.get(0),
        )?
    };
    match target {
        Some(version) => activate(conn, kind, service, version, actor),
        None => Ok(Activation::NoSuchVersion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn admin() -> Author {
        Author {
            actor: journal::Actor::Cli,
            name: "owner".to_string(),
        }
    }

    fn test_store() -> (tempfile::TempDir, Store) {
        crate::store::temporary_store()
    }

    #[test]
    fn save_activate_and_rollback() -> Result<(), StoreError> {
        let (_dir, store) = test_store();
        store.call_blocking(|c| {
            let first = save_version(c, "greeting", None, "Первая", true, &admin())?;
            assert_eq!(first.version, 1);
            assert!(first.active);
            let second = save_version(c, "greeting", None, "Вторая", false, &admin())?;
            assert_eq!(second.version, 2);
            assert!(!second.active);
            assert_eq!(active_version(c, "greeting", None)?.unwrap().body, "Первая");

            let Activation::Done { version, previous } =
                activate(c, "greeting", None, 2, &admin())?
            else {
                panic!("version 2 exists");
            };
            assert_eq!(version.body, "Вторая");
            assert_eq!(previous, Some(1));
            assert_eq!(active_version(c, "greeting", None)?.unwrap().version, 2);

            let Activation::Done { version, .. } = rollback(c, "greeting", None, &admin())? else {
                panic!("version 1 is older");
            };
            assert_eq!(version.body, "Первая");
            assert_eq!(
                rollback(c, "greeting", None, &admin())?,
                Activation::NoSuchVersion
            );
            assert_eq!(
                activate(c, "greeting", None, 9, &admin())?,
                Activation::NoSuchVersion
            );
            Ok(())
        })
    }

    #[test]
    fn service_keys_are_separate() -> Result<(), StoreError> {
        let (_dir, store) = test_store();
        store.call_blocking(|c| {
            save_version(c, "price_reply", Some("nails"), "Ногти", true, &admin())?;
            save_version(c, "price_reply", None, "Общий", true, &admin())?;
            assert_eq!(list_versions(c, "price_reply", Some("nails"))?.len(), 1);
            assert_eq!(list_versions(c, "price_reply", None)?.len(), 1);
            let keys = list_keys(c)?;
            assert_eq!(keys.len(), 2);
            assert!(keys.iter().all(|k| k.active_version == Some(1)));
            Ok(())
        })
    }

    #[test]
    fn versions_cannot_be_changed_or_deleted() -> Result<(), StoreError> {
        let (_dir, store) = test_store();
        store.call_blocking(|c| {
            save_version(c, "fallback", None, "Исходный текст", true, &admin())?;
            let update = c.execute(
                "UPDATE response_templates SET body = 'Другой' WHERE kind = 'fallback'",
                [],
            );
            assert!(update.is_err(), "a body update went through");
            let delete = c.execute("DELETE FROM response_templates", []);
            assert!(delete.is_err(), "a delete went through");
            assert_eq!(
                get_version(c, "fallback", None, 1)?.unwrap().body,
                "Исходный текст"
            );
            Ok(())
        })
    }

    #[test]
    fn second_active_version_is_rejected() -> Result<(), StoreError> {
        let (_dir, store) = test_store();
        store.call_blocking(|c| {
            save_version(c, "fallback", None, "Один", true, &admin())?;
            save_version(c, "fallback", None, "Два", false, &admin())?;
            let both = c.execute(
                "UPDATE response_templates SET active = 1 WHERE kind = 'fallback'",
                [],
            );
            assert!(both.is_err(), "two versions became active");
            Ok(())
        })
    }
}
