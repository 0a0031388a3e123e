//! The SQLCipher key and the code that opens every connection with it.
//!
//! SQLCipher encrypts each page with AES-256 and authenticates it with an HMAC. A
//! passphrase is stretched with PBKDF2 when the first page is read, so opening a
//! connection costs tens of milliseconds on purpose.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::StoreError;

/// The protection of the database file: a SQLCipher passphrase, or none.
// NOTE: the passphrase stays in ordinary heap memory, not zeroed on drop, until the
// process exits.
#[derive(Clone, PartialEq, Eq)]
pub enum DbKey {
    /// A SQLCipher passphrase.
    Passphrase(String),
    /// A plain SQLite file, for development only.
    Unencrypted,
}

impl fmt::Debug for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The passphrase itself never reaches a log line or a panic message.
            DbKey::Passphrase(_) => f.write_str("Passphrase(<hidden>)"),
            DbKey::Unencrypted => f.write_str("Unencrypted"),
        }
    }
}

impl DbKey {
    /// Returns a random passphrase for a database that lives only as long as one command.
    pub fn random() -> DbKey {
        let bytes: [u8; 32] = rand::random();
        DbKey::Passphrase(hex::encode(bytes))
    }

    /// Sets the key on a fresh connection; SQLCipher needs it before the first read.
    pub(crate) fn apply(&self, conn: &Connection) -> Result<(), StoreError> {
        if let DbKey::Passphrase(passphrase) = self {
            // rusqlite quotes the value as an SQL string literal, so any byte is safe here.
            conn.pragma_update(None, "key", passphrase)?;
        }
        Ok(())
    }
}

/// Opens a connection to `path` with `key` and checks that the key reads the file.
///
/// WAL with `synchronous=FULL`: a commit returns only after its WAL frames are
/// fsynced, so a lead that got a 2xx response survives `kill -9` and a power loss. NORMAL
/// would fsync only at checkpoints and could lose the last commits on power loss.
/// WAL also lets `leadgate backup` read a consistent snapshot while `serve` writes.
///
/// # Errors
/// [`StoreError::WrongKey`] when the key does not decrypt the file (or the file is not
/// a SQLite database), and any other SQLite error of opening it.
pub fn open_connection(
    path: &Path,
    key: &DbKey,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // SQLCipher writes its own lines to stderr, such as "hmac check failed" for a wrong
    // key. The error returned here reports the same in leadgate's words. The level is
    // process-wide and set again on each open, after SQLCipher has set its default.
    conn.pragma_update(None, "cipher_log_level", "NONE")?;
    key.apply(&conn)?;
    verify_key(&conn)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten with zeros, so erased personal data does not linger
    // in free pages of the file until the next VACUUM.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

/// Copies the write-ahead log into the database file and empties the log, so that erased
/// values do not linger in the `-wal` file until SQLite's next automatic checkpoint. A
/// reader on an old snapshot keeps the log from being emptied. The function then logs
/// that and returns, and a later checkpoint finishes the job.
pub fn checkpoint_after_erase(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    match result {
        Ok(0) => {}
        Ok(_) => {
            tracing::info!("the write-ahead log is in use; it is emptied at a later checkpoint")
        }
        Err(error) => tracing::warn!(%error, "checkpoint after an erase failed"),
    }
}

/// Reads the schema, which decrypts the first page: SQLCipher reports a wrong key
/// only at that moment, as "file is not a database".
pub(crate) fn verify_key(conn: &Connection) -> Result<(), StoreError> {
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(error) if error.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            Err(StoreError::WrongKey)
        }
        Err(error) => Err(error.into()),
    }
}
