//! `leadgate backup` and `leadgate db rekey` on the store's file.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::key::{DbKey, open_connection, verify_key};

/// The schema name the backup file is attached under.
const BACKUP_SCHEMA: &str = "backup";

/// Writes a consistent copy of the database open on `conn` to `target`, encrypted with
/// `target_key`, and returns its size in bytes.
///
/// The copy is made with `sqlcipher_export` inside one read transaction, so it is a
/// snapshot of one moment even while `serve` writes (WAL lets the reader and the writer
/// run together). It is written to a temporary file beside `target`, checked with
/// `PRAGMA quick_check`, synced and then renamed, so `target` is never a partial copy.
///
/// # Errors
/// [`StoreError::TargetExists`] when `target` exists and `overwrite` is false, and any
/// SQLite or file error; the temporary file is removed then.
pub fn backup(
    conn: &Connection,
    target: &Path,
    target_key: &DbKey,
    overwrite: bool,
) -> Result<u64, StoreError> {
    if target.exists() && !overwrite {
        return Err(StoreError::TargetExists {
            path: target.to_path_buf(),
        });
    }
    let folder = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // An empty file is a valid empty database for ATTACH, and the guard removes it
    // again on any error below.
    let temporary = tempfile::Builder::new()
        .prefix(".leadgate-backup-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(|error| io_error("cannot create a temporary file beside the backup", error))?;
    let temporary_path = temporary.path().to_str().ok_or_else(|| {
        StoreError::Io(format!(
            "the backup folder {} is not valid UTF-8, which SQLite needs",
            folder.display()
        ))
    })?;
    let passphrase = match target_key {
        DbKey::Passphrase(passphrase) => passphrase.as_str(),
        // An empty key makes SQLCipher write a plain SQLite file.
        DbKey::Unencrypted => "",
    };
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {BACKUP_SCHEMA} KEY ?2"),
        (temporary_path, passphrase),
    )?;
    let exported = export_snapshot(conn);
    let detached = conn.execute_batch(&format!("DETACH DATABASE {BACKUP_SCHEMA}"));
    exported?;
    detached?;

    let check = open_connection(temporary.path(), target_key, Duration::from_secs(5))?;
    let verdict: String = check.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    drop(check);
    if verdict != "ok" {
        return Err(StoreError::Io(format!(
            "the backup copy failed its integrity check: {verdict}"
        )));
    }
    let file = temporary
        .persist(target)
        .map_err(|error| io_error("cannot move the backup into place", error.error))?;
    file.sync_all()
        .map_err(|error| io_error("cannot sync the backup file", error))?;
    sync_folder(folder)?;
    let bytes = file
        .metadata()
        .map_err(|error| io_error("cannot read the backup file's size", error))?
        .len();
    Ok(bytes)
}

/// Copies schema, rows and `user_version` into the attached backup in one transaction.
fn export_snapshot(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA main.user_version", [], |row| row.get(0))?;
        conn.query_row(
            &format!("SELECT sqlcipher_export('{BACKUP_SCHEMA}')"),
            [],
            |_| Ok(()),
        )?;
        // sqlcipher_export copies no user_version, which stores the migration count.
        conn.execute_batch(&format!("PRAGMA {BACKUP_SCHEMA}.user_version = {version}"))?;
        Ok::<_, rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(error.into());
        }
    }
    Ok(())
}

/// Re-encrypts the database at `path` from `old_key` to `new_key`.
///
/// The file leaves WAL mode for the rekey, which needs exclusive access: when another
/// process has the database open, nothing changes and [`StoreError::InUse`] is returned.
/// SQLCipher's `PRAGMA rekey` reports no error of its own, so the result is checked by
/// opening the file again with each key.
///
/// # Errors
/// [`StoreError::WrongKey`] when `old_key` does not open the file, [`StoreError::InUse`],
/// [`StoreError::RekeyFailed`], and any SQLite error.
pub fn rekey(
    path: &Path,
    old_key: &DbKey,
    new_key: &DbKey,
    busy_timeout: Duration,
) -> Result<(), StoreError> {
    let (DbKey::Passphrase(_), DbKey::Passphrase(new_passphrase)) = (old_key, new_key) else {
        return Err(StoreError::InvalidRekey(
            "rekey needs an encrypted database and a new key; use `leadgate backup` with \
             another key to convert a database",
        ));
    };
    if old_key == new_key {
        return Err(StoreError::InvalidRekey(
            "the new key is the same as the current one",
        ));
    }
    let conn = open_connection(path, old_key, busy_timeout)?;
    let mode: String = match conn.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0)) {
        Ok(mode) => mode,
        Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            return Err(StoreError::InUse);
        }
        Err(error) => return Err(error.into()),
    };
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::InUse);
    }
    conn.pragma_update(None, "rekey", new_passphrase)?;
    drop(conn);

    let reopened = Connection::open(path)?;
    new_key.apply(&reopened)?;
    if verify_key(&reopened).is_err() {
        return Err(StoreError::RekeyFailed);
    }
    reopened.pragma_update(None, "journal_mode", "WAL")?;
    Ok(())
}

fn io_error(context: &str, error: std::io::Error) -> StoreError {
    StoreError::Io(format!("{context}: {error}"))
}

/// Syncs the folder entry of a renamed file, so the rename survives a power loss.
fn sync_folder(folder: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io_error("cannot sync the backup folder", error))?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const TIMEOUT: Duration = Duration::from_secs(5);
    const PLANTED: &str = "Гульнара +79174821639";

    fn passphrase(text: &str) -> DbKey {
        DbKey::Passphrase(text.to_string())
    }

    /// Creates a migrated database with one row that holds `PLANTED`.
    fn planted_db(path: &Path, key: &DbKey) {
        let store = Store::open(path, key, TIMEOUT).unwrap();
        store
            .call_blocking(|conn| {
                conn.execute(
                    "INSERT INTO journal (at, action, fields) VALUES ('now', 'test', ?1)",
                    [PLANTED],
                )?;
                Ok(())
            })
            .unwrap();
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    fn planted_rows(path: &Path, key: &DbKey) -> i64 {
        let conn = open_connection(path, key, TIMEOUT).unwrap();
        conn.query_row(
            "SELECT count(*) FROM journal WHERE fields = ?1",
            [PLANTED],
            |row| row.get(0),
        )
        .unwrap()
    }

    #[test]
    fn wrong_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leads.db");
        planted_db(&path, &passphrase("right"));
        let error = open_connection(&path, &passphrase("wrong"), TIMEOUT).unwrap_err();
        assert!(matches!(error, StoreError::WrongKey), "{error}");
        let error = open_connection(&path, &DbKey::Unencrypted, TIMEOUT).unwrap_err();
        assert!(matches!(error, StoreError::WrongKey), "{error}");
    }

    #[test]
    fn backup_is_encrypted_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leads.db");
        let key = passphrase("database key");
        planted_db(&path, &key);
        let conn = open_connection(&path, &key, TIMEOUT).unwrap();
        let target = dir.path().join("copy.db");
        let bytes = backup(&conn, &target, &key, false).unwrap();
        assert!(bytes > 0);

        let raw = std::fs::read(&target).unwrap();
        assert!(
            !raw.starts_with(b"SQLite format 3\0"),
            "the backup is plain SQLite"
        );
        assert!(
            !contains(&raw, "79174821639"),
            "the planted phone is readable"
        );
        assert_eq!(planted_rows(&target, &key), 1);
        let version: i64 = open_connection(&target, &key, TIMEOUT)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert!(version >= 1, "user_version {version} was not copied");

        let error = backup(&conn, &target, &key, false).unwrap_err();
        assert!(matches!(error, StoreError::TargetExists { .. }), "{error}");
        let other_key = passphrase("backup key");
        backup(&conn, &target, &other_key, true).unwrap();
        assert_eq!(planted_rows(&target, &other_key), 1);
        let error = open_connection(&target, &key, TIMEOUT).unwrap_err();
        assert!(matches!(error, StoreError::WrongKey), "{error}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn rekey_swaps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leads.db");
        let old = passphrase("old key");
        let new = passphrase("new key");
        planted_db(&path, &old);
        rekey(&path, &old, &new, TIMEOUT).unwrap();
        assert_eq!(planted_rows(&path, &new), 1);
        let error = open_connection(&path, &old, TIMEOUT).unwrap_err();
        assert!(matches!(error, StoreError::WrongKey), "{error}");
        let mode: String = open_connection(&path, &new, TIMEOUT)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn rekey_refuses_an_open_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leads.db");
        let old = passphrase("old key");
        planted_db(&path, &old);
        let _server = Store::open(&path, &old, TIMEOUT).unwrap();
        let error = rekey(&path, &old, &passphrase("new key"), Duration::ZERO).unwrap_err();
        assert!(matches!(error, StoreError::InUse), "{error}");
        assert_eq!(planted_rows(&path, &old), 1);
    }
}
