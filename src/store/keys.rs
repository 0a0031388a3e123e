//! API keys: roles, the stored hashes, and the lookup of a presented key.
//!
//! Only the hex SHA-256 of a key is stored. A key is looked up in the database on every
//! request, so a key created or revoked by another process on the same file takes effect
//! at once.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::journal::{Actor, Entry};
use super::{Store, StoreError, now_rfc3339};

/// The permission level of a key: `bot` creates leads and records consent, `staff` reviews
/// drafts, `admin` manages templates, consent texts and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Bot,
    Staff,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Bot, Role::Staff, Role::Admin];

    /// Returns the name stored in the database and used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bot => "bot",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The holder of a valid, unrevoked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: i64,
    pub name: String,
    pub role: Role,
}

/// A stored key as `keys list` shows it, without the secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The first characters of the key.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Returns the hex SHA-256 under which a key is stored.
pub fn key_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn read_role(value: String) -> Result<Role, StoreError> {
    Role::parse(&value).ok_or_else(|| StoreError::Corrupt {
        column: "role",
        message: format!("unknown role `{value}`"),
    })
}

/// Stores a new key by its hash and returns its id.
pub fn insert_key(
    conn: &mut Connection,
    name: &str,
    role: Role,
    prefix: &str,
    sha256: &str,
) -> Result<i64, StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO api_keys (name, role, prefix, key_sha256, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, role.as_str(), prefix, sha256, now_rfc3339()],
    )?;
    let id = tx.last_insert_rowid();
    // Keys are created only at the command line of the host.
    let mut entry = Entry::new("key_created", Actor::Cli);
    entry.details = serde_json::json!({ "key": id, "role": role.as_str() });
    super::journal::append(&tx, &entry)?;
    tx.commit()?;
    Ok(id)
}

/// Returns every key, revoked ones included, oldest first.
pub fn list_keys(conn: &Connection) -> Result<Vec<KeyInfo>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT id, name, role, prefix, created_at, revoked_at FROM api_keys ORDER BY id",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, name, role, prefix, created_at, revoked_at)| {
            Ok(KeyInfo {
                id,
                name,
                role: read_role(role)?,
                prefix,
                created_at,
                revoked_at,
            })
        })
        .collect()
}

/// The outcome of [`revoke_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    /// The key was revoked before; its revocation time is kept.
    Already,
    NotFound,
}

/// Marks a key revoked; later requests with it get 401.
pub fn revoke_key(conn: &mut Connection, id: i64) -> Result<Revoked, StoreError> {
    let tx = conn.transaction()?;
    let revoked_at: Option<Option<String>> = tx
        .query_row(
            "SELECT revoked_at FROM api_keys WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?;
    let outcome = match revoked_at {
        None => Revoked::NotFound,
        Some(Some(_)) => Revoked::Already,
        Some(None) => {
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2",
                params![now_rfc3339(), id],
            )?;
            let mut entry = Entry::new("key_revoked", Actor::Cli);
            entry.details = serde_json::json!({ "key": id });
            super::journal::append(&tx, &entry)?;
            Revoked::Now
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// Returns the holder of `key` when it is stored and not revoked.
pub fn find_key(conn: &Connection, key: &str) -> Result<Option<Principal>, StoreError> {
    let row = conn
        .query_row(
            "SELECT id, name, role FROM api_keys WHERE key_sha256 = ?1 AND revoked_at IS NULL",
            params![key_sha256(key)],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((key_id, name, role)) = row else {
        return Ok(None);
    };
    Ok(Some(Principal {
        key_id,
        name,
        role: read_role(role)?,
    }))
}

impl Store {
    /// Looks up a presented key on the calling thread; `None` when it is unknown or revoked.
    pub fn authenticate(&self, key: &str) -> Result<Option<Principal>, StoreError> {
        self.call_blocking(|conn| find_key(conn, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_key_no_longer_authenticates() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("test.db"),
            &crate::store::DbKey::Passphrase("test key".into()),
            std::time::Duration::from_secs(5),
        )?;
        let key = "lg_0123456789abcdef";
        let id = store.call_blocking(|c| {
            insert_key(c, "clinic bot", Role::Bot, "lg_0123", &key_sha256(key))
        })?;
        let principal = store.authenticate(key)?.expect("a stored key");
        assert_eq!(principal.key_id, id);
        assert_eq!(principal.role, Role::Bot);
        assert!(store.authenticate("lg_other")?.is_none());
        assert_eq!(store.call_blocking(|c| revoke_key(c, id))?, Revoked::Now);
        assert_eq!(
            store.call_blocking(|c| revoke_key(c, id))?,
            Revoked::Already
        );
        assert_eq!(
            store.call_blocking(|c| revoke_key(c, id + 1))?,
            Revoked::NotFound
        );
        assert!(store.authenticate(key)?.is_none());
        Ok(())
    }
}
