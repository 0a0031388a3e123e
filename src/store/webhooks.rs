//! The webhook delivery queue: one row per approved reply while a webhook is configured,
//! with the number of attempts, the time of the next one and the last outcome.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, now_rfc3339};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// The stored state of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub reply_id: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The HTTP status, `None` when no response came.
    pub http_status: Option<u16>,
    /// What failed, without the request or response body; `None` on success.
    pub error: Option<String>,
    /// When to try again (Unix milliseconds); `None` when delivered or out of attempts.
    pub retry_at_ms: Option<i64>,
}

/// Returns the current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Adds a pending delivery of reply `reply_id`, due now.
pub fn queue(conn: &Connection, reply_id: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO webhook_deliveries (reply_id, status, attempts, next_attempt_ms, \
         updated_at) VALUES (?1, ?2, 0, ?3, ?4)",
        params![reply_id, PENDING, now_ms(), now_rfc3339()],
    )?;
    Ok(())
}

/// Returns the ids of pending deliveries due at `now_ms`, oldest reply first.
pub fn due(conn: &Connection, now_ms: i64, limit: usize) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT reply_id FROM webhook_deliveries WHERE status = ?1 AND next_attempt_ms <= ?2 \
         ORDER BY reply_id LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let ids = statement
        .query_map(params![PENDING, now_ms, limit], |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Returns the time (Unix milliseconds) of the earliest pending attempt, if any.
pub fn next_due_ms(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let next = conn.query_row(
        "SELECT min(next_attempt_ms) FROM webhook_deliveries WHERE status = ?1",
        params![PENDING],
        |row| row.get(0),
    )?;
    Ok(next)
}

/// Stores the outcome of an attempt and moves the delivery to delivered, failed (no retry
/// left) or keeps it pending until `retry_at_ms`.
pub fn record(conn: &Connection, reply_id: i64, attempt: &Attempt) -> Result<(), StoreError> {
    let (status, delivered_at) = match (&attempt.error, attempt.retry_at_ms) {
        (None, _) => (DELIVERED, Some(now_rfc3339())),
        (Some(_), Some(_)) => (PENDING, None),
        (Some(_), None) => (FAILED, None),
    };
    conn.execute(
        "UPDATE webhook_deliveries SET status = ?1, attempts = attempts + 1, \
         next_attempt_ms = ifnull(?2, next_attempt_ms), last_status = ?3, last_error = ?4, \
         delivered_at = ?5, updated_at = ?6 WHERE reply_id = ?7",
        params![
            status,
            attempt.retry_at_ms,
            attempt.http_status,
            attempt.error,
            delivered_at,
            now_rfc3339(),
            reply_id
        ],
    )?;
    Ok(())
}

/// Returns the delivery of reply `reply_id`, or `None` when none was queued.
pub fn load(conn: &Connection, reply_id: i64) -> Result<Option<Delivery>, StoreError> {
    let delivery = conn
        .query_row(
            "SELECT reply_id, status, attempts, next_attempt_ms, last_status, last_error \
             FROM webhook_deliveries WHERE reply_id = ?1",
            params![reply_id],
            |row| {
                Ok(Delivery {
                    reply_id: row.get(0)?,
                    status: row.get(1)?,
                    attempts: row.get(2)?,
                    next_attempt_ms: row.get(3)?,
                    last_status: row.get(4)?,
                    last_error: row.get(5)?,
                })
            },
        )
        .optional()?;
    Ok(delivery)
}
