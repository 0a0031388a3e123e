//! SQLite storage of leads, redaction mappings, qualifications, drafts, templates, API keys,
//! consent texts, the consent log and the journal.
//!
//! One file in WAL mode with `synchronous=FULL`, so a committed lead survives a power loss.
//! Every statement binds its values as parameters: rusqlite puts the SQL text into some
//! error messages, so a value written into the SQL could leak into logs. The store knows
//! nothing of HTTP. Async callers go through [`Store::call`], which runs the work on a
//! blocking thread.

pub mod acts;
pub mod journal;
pub mod keys;
pub mod queries;
pub mod retention;
mod schema;
pub mod subject;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use queries::{
    DraftRow, Inserted, LeadRecord, LeadWork, NewLead, QualificationRow, TemplateRow,
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
}

/// A handle to the database; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens or creates the database file and applies the missing migrations.
    ///
    /// # Errors
    /// When the file cannot be opened, is not a SQLite database, or has a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten with zeros, so erased personal data does not linger
        // in free pages of the file until the next VACUUM.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
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
        work(&mut conn)
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

/// The current UTC time in RFC 3339, the format of every time column; see [`crate::clock`].
pub fn now_rfc3339() -> String {
    crate::clock::format(crate::clock::now())
}
