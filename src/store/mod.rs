//! SQLite storage of leads, redaction mappings, qualifications, drafts and their review,
//! template versions, replies, webhook deliveries, API keys, consent texts, the consent log
//! and the journal.
//!
//! One SQLCipher-encrypted file in WAL mode with `synchronous=FULL`, so a committed lead
//! survives a power loss (see [`key::open_connection`]). Every statement binds its values as parameters: rusqlite puts the SQL text into some
//! error messages, so a value written into the SQL could leak into logs. The store knows
//! nothing of HTTP. Async callers go through [`Store::call`], which runs the work on a
//! blocking thread.

pub mod acts;
pub mod backup;
pub mod consent;
pub mod journal;
pub mod key;
pub mod keys;
pub mod queries;
pub mod retention;
pub mod review;
mod schema;
pub mod sessions;
pub mod subject;
pub mod templates;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

pub use key::{DbKey, open_connection};

pub use queries::{
    DraftRow, Inserted, LeadGate, LeadRecord, LeadWork, NewLead, QualificationRow, TemplateRow,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error(
        "the database has schema version {found}, newer than this leadgate knows ({known}); \
         run a newer leadgate"
    )]
    NewerSchema { found: usize, known: usize },

    #[error("invalid stored value in column `{column}`: {message}")]
    Corrupt {
        column: &'static str,
        message: String,
    },

    #[error("the database task stopped before it finished")]
    TaskFailed,

    #[error("wrong database key or not a leadgate database")]
    WrongKey,

    #[error(
        "the database is busy: another connection held its lock for longer than the busy \
         timeout"
    )]
    Busy,

    #[error("{path} already exists; pass --force to replace it")]
    TargetExists { path: PathBuf },

    #[error(
        "the database is in use by another process (is `leadgate serve` running?); \
         stop it first"
    )]
    InUse,

    #[error("the database did not open with the new key after the rekey; try the old key")]
    RekeyFailed,

    #[error("{0}")]
    InvalidRekey(&'static str),

    /// A file operation of a backup failed; the message names the step and the cause.
    #[error("{0}")]
    Io(String),
    /// A consent text version that does not exist; `version: None` means the purpose has
    /// no active version.
    #[error("consent text {purpose} version {} does not exist", version.map_or("(active)".to_string(), |v| v.to_string()))]
    UnknownConsentText {
        purpose: String,
        version: Option<i64>,
    },

    #[error(
        "consent text {purpose} version {version} is used by the consent log and cannot change; \
         add a new version instead"
    )]
    ConsentTextInUse { purpose: String, version: i64 },
}

/// A handle to the database; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens or creates the database file with `key` and applies the missing migrations.
    /// `busy_timeout` bounds how long a statement waits for another connection's lock.
    ///
    /// # Errors
    /// [`StoreError::WrongKey`] when the key does not decrypt the file, and any error of
    /// opening it or of a migration, or [`StoreError::NewerSchema`].
    pub fn open(path: &Path, key: &DbKey, busy_timeout: Duration) -> Result<Store, StoreError> {
        let mut conn = open_connection(path, key, busy_timeout)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` with the connection on the calling thread.
    pub fn call_blocking<R>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        // A panic while the lock was held leaves no half-written transaction behind,
        // because rusqlite rolls back on drop, so a poisoned lock is safe to reuse.
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut conn).map_err(|error| match error {
            StoreError::Sqlite(sqlite)
                if sqlite.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) =>
            {
                StoreError::Busy
            }
            other => other,
        })
    }

    /// Runs `work` with the connection on a blocking thread, off the async executor.
    pub async fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.call_blocking(work))
            .await
            .map_err(|_| StoreError::TaskFailed)?
    }

    /// Returns true when a trivial query succeeds.
    pub fn is_healthy(&self) -> bool {
        self.call_blocking(|conn| Ok(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?))
            .is_ok()
    }
}

/// The author of a template version or a draft review: the performer the journal records,
/// and the name stored beside the change (an API key's name, or a label such as `cli`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub actor: journal::Actor,
    pub name: String,
}

impl Author {
    pub fn key_id(&self) -> Option<i64> {
        self.actor.key_id()
    }
}

impl From<&keys::Principal> for Author {
    fn from(principal: &keys::Principal) -> Author {
        Author {
            actor: journal::Actor::from(principal),
            name: principal.name.clone(),
        }
    }
}

/// Opens a new database with a fixed test key in a temporary folder, which is removed when
/// the returned `TempDir` drops.
#[cfg(test)]
pub(crate) fn temporary_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let key = DbKey::Passphrase("test key".into());
    let store = Store::open(&dir.path().join("test.db"), &key, Duration::from_secs(5)).unwrap();
    (dir, store)
}

/// The current UTC time in RFC 3339, the format of every time column; see [`crate::clock`].
pub fn now_rfc3339() -> String {
    crate::clock::format(crate::clock::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lock_maps_to_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leads.db");
        let key = DbKey::Passphrase("test key".into());
        let store = Store::open(&path, &key, Duration::from_millis(50)).unwrap();
        let other = open_connection(&path, &key, Duration::from_millis(50)).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let result = store.call_blocking(|conn| {
            conn.execute(
                "INSERT INTO journal (at, action, fields) VALUES ('now', 'test', '[]')",
                [],
            )?;
            Ok(())
        });
        assert!(matches!(result, Err(StoreError::Busy)), "{result:?}");
        other.execute_batch("ROLLBACK").unwrap();
    }
}
