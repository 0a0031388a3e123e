//! Staff page sessions: a random token in an HTTP-only cookie, stored here by its SHA-256
//! with the key that signed in and the session's CSRF token.
//!
//! A session is valid while it has not expired and its key is not revoked, so revoking a
//! key ends its sessions at the next request.

use rusqlite::{Connection, OptionalExtension, params};

use super::keys::{Principal, Role, key_sha256};
use super::{StoreError, now_rfc3339};

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
}

/// Returns the current Unix time in seconds.
pub fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Stores a session for `key_id` that expires `lifetime_seconds` from now.
pub fn create(
    conn: &Connection,
    token: &str,
    key_id: i64,
    csrf_token: &str,
    lifetime_seconds: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO ui_sessions (token_sha256, key_id, csrf_token, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            key_sha256(token),
            key_id,
            csrf_token,
            now_rfc3339(),
            now_seconds() + lifetime_seconds
        ],
    )?;
    // Expired sessions go whenever a new one starts, so the table stays small.
    conn.execute(
        "DELETE FROM ui_sessions WHERE expires_at <= ?1",
        params![now_seconds()],
    )?;
    Ok(())
}

/// Returns the session of `token`, or `None` when it is unknown, expired or its key is
/// revoked.
pub fn find(conn: &Connection, token: &str) -> Result<Option<Session>, StoreError> {
    let row = conn
        .query_row(
            "SELECT k.id, k.name, k.role, s.csrf_token FROM ui_sessions s \
             JOIN api_keys k ON k.id = s.key_id \
             WHERE s.token_sha256 = ?1 AND s.expires_at > ?2 AND k.revoked_at IS NULL",
            params![key_sha256(token), now_seconds()],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((key_id, name, role, csrf_token)) = row else {
        return Ok(None);
    };
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
        column: "role",
        message: format!("unknown role `{role}`"),
    })?;
    Ok(Some(Session {
        principal: Principal { key_id, name, role },
        csrf_token,
    }))
}

/// Ends the session of `token`.
pub fn delete(conn: &Connection, token: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM ui_sessions WHERE token_sha256 = ?1",
        params![key_sha256(token)],
    )?;
    Ok(())
}
