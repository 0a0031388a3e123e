//! Consent texts and the consent log.
//!
//! The log is append-only: no statement here updates or deletes a row, and triggers raise
//! on any UPDATE, and on any DELETE but the retention job's removal of events past their
//! term (store/retention.rs), which keeps their hashes in `consent_log_pruned`. Each row stores `sha256 = SHA-256(prev_sha256 "\n" canonical)`,
//! where `canonical` is the JSON array of its content (see [`canonical_content`]) and
//! `prev_sha256` is the hash of the row before it (64 zeros for the first). The table
//! `consent_log_head` keeps the last row's id and hash. [`verify_chain`] recomputes all of
//! it, so a row changed, removed or reordered directly in the file is found.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{StoreError, now_rfc3339};
use crate::store::queries::journal_by;

/// The `prev_sha256` of the first row.
pub const GENESIS_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A consent text version ready to be stored, with its templates filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConsentText {
    pub purpose: String,
    pub operator: String,
    pub categories: Vec<String>,
    pub operations: Vec<String>,
    pub term: String,
    pub withdrawal: String,
    pub policy_url: String,
    pub body: String,
}

/// A stored consent text version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentText {
    pub purpose: String,
    pub version: i64,
    /// True for the version new consents refer to by default; one per purpose.
    pub active: bool,
    /// True once a consent event refers to it; such a version can no longer change.
    pub used: bool,
    pub operator: String,
    pub categories: Vec<String>,
    pub operations: Vec<String>,
    pub term: String,
    pub withdrawal: String,
    pub policy_url: String,
    /// The full text shown to the client.
    pub body: String,
    pub created_at: String,
}

/// A consent event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Granted,
    Withdrawn,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Granted => "granted",
            EventKind::Withdrawn => "withdrawn",
        }
    }

    fn parse(name: &str) -> Result<EventKind, StoreError> {
        match name {
            "granted" => Ok(EventKind::Granted),
            "withdrawn" => Ok(EventKind::Withdrawn),
            other => Err(StoreError::Corrupt {
                column: "event",
                message: format!("unknown consent event `{other}`"),
            }),
        }
    }
}

/// A consent event to append; the subject is already normalised.
#[derive(Clone)]
pub struct NewConsentEvent {
    pub subject_kind: String,
    pub subject: String,
    pub event: EventKind,
    pub purpose: String,
    /// `None` for the purpose's active version.
    pub text_version: Option<i64>,
    pub channel: String,
    pub evidence: String,
    /// RFC 3339 time the client gave or withdrew consent; `None` for now.
    pub at: Option<String>,
    pub key_id: Option<i64>,
}

/// A row of the consent log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConsentRecord {
    pub id: i64,
    pub subject_kind: String,
    pub subject: String,
    pub event: EventKind,
    pub purpose: String,
    pub text_version: i64,
    pub channel: String,
    pub evidence: String,
    pub at: String,
    pub recorded_at: String,
    pub key_id: Option<i64>,
    pub prev_sha256: String,
    pub sha256: String,
}

/// The outcome of [`record_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// A new row was appended.
    Appended(ConsentRecord),
    /// The same event (subject, purpose, kind, channel and evidence) was already logged, so
    /// a repeated request does not log it twice.
    Repeated(ConsentRecord),
}

impl Recorded {
    pub fn record(&self) -> &ConsentRecord {
        match self {
            Recorded::Appended(record) | Recorded::Repeated(record) => record,
        }
    }
}

/// Work done inside the transaction that logs a withdrawal, after the subject's leads were
/// stopped, such as scheduling the erasure of the subject's data.
pub type WithdrawalHook =
    Arc<dyn Fn(&Transaction<'_>, &ConsentRecord) -> Result<(), StoreError> + Send + Sync>;

/// The result of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChainReport {
    /// True when every row matches its hash and the chain and head are unbroken.
    pub valid: bool,
    /// Rows read.
    pub rows: u64,
    /// Rows the retention job removed after their term, checked by their kept hashes.
    pub pruned: u64,
    /// The hash of the last row, which an auditor can note down to compare later.
    pub last_sha256: Option<String>,
    /// The first problem found; `None` when the chain is valid.
    pub error: Option<ChainError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChainError {
    /// The id of the row where the chain breaks; `None` for a problem with the head.
    pub id: Option<i64>,
    /// `content_changed`, `chain_broken` or `head_mismatch`.
    pub kind: String,
    pub message: String,
}

fn text_from_row(row: &Row<'_>) -> rusqlite::Result<(ConsentText, String, String)> {
    Ok((
        ConsentText {
            purpose: row.get(0)?,
            version: row.get(1)?,
            active: row.get(2)?,
            used: row.get(3)?,
            operator: row.get(4)?,
            categories: Vec::new(),
            operations: Vec::new(),
            term: row.get(7)?,
            withdrawal: row.get(8)?,
            policy_url: row.get(9)?,
            body: row.get(10)?,
            created_at: row.get(11)?,
        },
        row.get(5)?,
        row.get(6)?,
    ))
}

const TEXT_COLUMNS: &str = "t.purpose, t.version, t.active, \
    EXISTS (SELECT 1 FROM consent_log l WHERE l.purpose = t.purpose \
            AND l.text_version = t.version), \
    t.operator, t.categories, t.operations, t.term, t.withdrawal, t.policy_url, t.body, \
    t.created_at";

fn decode_list(column: &'static str, json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn encode_list(column: &'static str, values: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(values).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn query_texts(
    conn: &Connection,
    filter: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<Vec<ConsentText>, StoreError> {
    let sql = format!(
        "SELECT {TEXT_COLUMNS} FROM consent_texts t {filter} ORDER BY t.purpose, t.version"
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement
        .query_map(values, text_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(mut text, categories, operations)| {
            text.categories = decode_list("categories", &categories)?;
            text.operations = decode_list("operations", &operations)?;
            Ok(text)
        })
        .collect()
}

/// Returns every consent text version, by purpose and version.
pub fn list_texts(conn: &Connection) -> Result<Vec<ConsentText>, StoreError> {
    query_texts(conn, "", &[])
}

/// Returns one version, or `None` when it does not exist.
pub fn get_text(
    conn: &Connection,
    purpose: &str,
    version: i64,
) -> Result<Option<ConsentText>, StoreError> {
    let filter = "WHERE t.purpose = ?1 AND t.version = ?2";
    Ok(query_texts(conn, filter, &[&purpose, &version])?.pop())
}

/// Returns the active version of `purpose`, or `None` when it has none.
pub fn active_text(conn: &Connection, purpose: &str) -> Result<Option<ConsentText>, StoreError> {
    let filter = "WHERE t.purpose = ?1 AND t.active = 1";
    Ok(query_texts(conn, filter, &[&purpose])?.pop())
}

fn insert_text_row(
    tx: &Transaction<'_>,
    text: &NewConsentText,
    version: i64,
    active: bool,
    key_id: Option<i64>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO consent_texts (purpose, version, operator, categories, operations, term, \
         withdrawal, policy_url, body, active, created_at, key_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            text.purpose,
            version,
            text.operator,
            encode_list("categories", &text.categories)?,
            encode_list("operations", &text.operations)?,
            text.term,
            text.withdrawal,
            text.policy_url,
            text.body,
            active,
            now_rfc3339(),
            key_id,
        ],
    )?;
    let fields = serde_json::json!({ "purpose": text.purpose, "version": version });
    journal_by(tx, "consent_text_added", None, key_id, &fields)?;
    Ok(())
}

/// Stores `text` as version 1, active, when its purpose has no version yet; returns
/// whether it did.
pub fn seed_text(conn: &mut Connection, text: &NewConsentText) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let count: i64 = tx.query_row(
        "SELECT count(*) FROM consent_texts WHERE purpose = ?1",
        params![text.purpose],
        |row| row.get(0),
    )?;
    if count > 0 {
        return Ok(false);
    }
    insert_text_row(&tx, text, 1, true, None)?;
    tx.commit()?;
    Ok(true)
}

/// Stores `text` as the next version of its purpose, inactive until [`activate_text`].
pub fn add_text(
    conn: &mut Connection,
    text: &NewConsentText,
    key_id: Option<i64>,
) -> Result<ConsentText, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM consent_texts WHERE purpose = ?1",
        params![text.purpose],
        |row| row.get(0),
    )?;
    insert_text_row(&tx, text, version, false, key_id)?;
    let stored = get_text(&tx, &text.purpose, version)?
        .ok_or_else(|| unknown_text(&text.purpose, Some(version)))?;
    tx.commit()?;
    Ok(stored)
}

fn unknown_text(purpose: &str, version: Option<i64>) -> StoreError {
    StoreError::UnknownConsentText {
        purpose: purpose.to_string(),
        version,
    }
}

/// Replaces the content of a version that no consent event refers to yet.
///
/// # Errors
/// [`StoreError::UnknownConsentText`] when the version does not exist and
/// [`StoreError::ConsentTextInUse`] when a consent event refers to it.
pub fn update_text(
    conn: &mut Connection,
    version: i64,
    text: &NewConsentText,
    key_id: Option<i64>,
) -> Result<ConsentText, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = get_text(&tx, &text.purpose, version)?
        .ok_or_else(|| unknown_text(&text.purpose, Some(version)))?;
    if current.used {
        return Err(StoreError::ConsentTextInUse {
            purpose: text.purpose.clone(),
            version,
        });
    }
    tx.execute(
        "UPDATE consent_texts SET operator = ?1, categories = ?2, operations = ?3, term = ?4, \
         withdrawal = ?5, policy_url = ?6, body = ?7 WHERE purpose = ?8 AND version = ?9",
        params![
            text.operator,
            encode_list("categories", &text.categories)?,
            encode_list("operations", &text.operations)?,
            text.term,
            text.withdrawal,
            text.policy_url,
            text.body,
            text.purpose,
            version,
        ],
    )?;
    let fields = serde_json::json!({ "purpose": text.purpose, "version": version });
    journal_by(&tx, "consent_text_changed", None, key_id, &fields)?;
    let stored = get_text(&tx, &text.purpose, version)?
        .ok_or_else(|| unknown_text(&text.purpose, Some(version)))?;
    tx.commit()?;
    Ok(stored)
}

/// Makes `version` the active one of `purpose`, the version new consents refer to.
///
/// # Errors
/// [`StoreError::UnknownConsentText`] when the version does not exist.
pub fn activate_text(
    conn: &mut Connection,
    purpose: &str,
    version: i64,
    key_id: Option<i64>,
) -> Result<ConsentText, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if get_text(&tx, purpose, version)?.is_none() {
        return Err(unknown_text(purpose, Some(version)));
    }
    tx.execute(
        "UPDATE consent_texts SET active = 0 WHERE purpose = ?1 AND active = 1",
        params![purpose],
    )?;
    tx.execute(
        "UPDATE consent_texts SET active = 1 WHERE purpose = ?1 AND version = ?2",
        params![purpose, version],
    )?;
    let fields = serde_json::json!({ "purpose": purpose, "version": version });
    journal_by(&tx, "consent_text_activated", None, key_id, &fields)?;
    let stored =
        get_text(&tx, purpose, version)?.ok_or_else(|| unknown_text(purpose, Some(version)))?;
    tx.commit()?;
    Ok(stored)
}

/// Returns the canonical content of a row that its hash covers: a JSON array of every
/// column but the two hashes, in the table's order.
pub fn canonical_content(record: &ConsentRecord) -> String {
    serde_json::json!([
        record.id,
        record.subject_kind,
        record.subject,
        record.event.as_str(),
        record.purpose,
        record.text_version,
        record.channel,
        record.evidence,
        record.at,
        record.recorded_at,
        record.key_id,
    ])
    .to_string()
}

/// Returns the hash of a row that follows a row with hash `prev_sha256`.
pub fn chain_sha256(prev_sha256: &str, record: &ConsentRecord) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_sha256.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_content(record).as_bytes());
    hex::encode(hasher.finalize())
}

const RECORD_COLUMNS: &str = "id, subject_kind, subject, event, purpose, text_version, channel, \
    evidence, at, recorded_at, key_id, prev_sha256, sha256";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<(ConsentRecord, String)> {
    Ok((
        ConsentRecord {
            id: row.get(0)?,
            subject_kind: row.get(1)?,
            subject: row.get(2)?,
            event: EventKind::Granted,
            purpose: row.get(4)?,
            text_version: row.get(5)?,
            channel: row.get(6)?,
            evidence: row.get(7)?,
            at: row.get(8)?,
            recorded_at: row.get(9)?,
            key_id: row.get(10)?,
            prev_sha256: row.get(11)?,
            sha256: row.get(12)?,
        },
        row.get(3)?,
    ))
}

fn decode_record(
    (mut record, event): (ConsentRecord, String),
) -> Result<ConsentRecord, StoreError> {
    record.event = EventKind::parse(&event)?;
    Ok(record)
}

fn resolve_text_version(tx: &Transaction<'_>, event: &NewConsentEvent) -> Result<i64, StoreError> {
    let text = match event.text_version {
        Some(version) => get_text(tx, &event.purpose, version)?
            .ok_or_else(|| unknown_text(&event.purpose, Some(version)))?,
        None => {
            active_text(tx, &event.purpose)?.ok_or_else(|| unknown_text(&event.purpose, None))?
        }
    };
    Ok(text.version)
}

/// Returns the logged row of the same event, if any.
fn find_repeated(
    tx: &Transaction<'_>,
    event: &NewConsentEvent,
) -> Result<Option<ConsentRecord>, StoreError> {
    let row = tx
        .query_row(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM consent_log WHERE subject_kind = ?1 \
                 AND subject = ?2 AND purpose = ?3 AND event = ?4 AND channel = ?5 \
                 AND evidence = ?6 ORDER BY id DESC LIMIT 1"
            ),
            params![
                event.subject_kind,
                event.subject,
                event.purpose,
                event.event.as_str(),
                event.channel,
                event.evidence
            ],
            record_from_row,
        )
        .optional()?;
    row.map(decode_record).transpose()
}

/// Writes a row with its hash and moves the head to it.
fn insert_record(tx: &Transaction<'_>, record: &ConsentRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO consent_log ({RECORD_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            record.id,
            record.subject_kind,
            record.subject,
            record.event.as_str(),
            record.purpose,
            record.text_version,
            record.channel,
            record.evidence,
            record.at,
            record.recorded_at,
            record.key_id,
            record.prev_sha256,
            record.sha256,
        ],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO consent_log_head (single, last_id, sha256) VALUES (1, ?1, ?2)",
        params![record.id, record.sha256],
    )?;
    Ok(())
}

/// Appends an event inside the caller's transaction, or returns the same event logged
/// before.
///
/// # Errors
/// [`StoreError::UnknownConsentText`] when the text version (or, with none given, an active
/// version of the purpose) does not exist.
pub fn append_event(tx: &Transaction<'_>, event: &NewConsentEvent) -> Result<Recorded, StoreError> {
    let text_version = resolve_text_version(tx, event)?;
    if let Some(record) = find_repeated(tx, event)? {
        return Ok(Recorded::Repeated(record));
    }

    // The head names the last row even if rows were removed from the end, so a new row
    // never reuses the id or the place of a removed one.
    let (last_id, prev_sha256): (i64, String) = tx
        .query_row(
            "SELECT last_id, sha256 FROM consent_log_head WHERE single = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS_SHA256.to_string()));
    let max_id: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM consent_log", [], |row| {
        row.get(0)
    })?;
    let recorded_at = now_rfc3339();
    let mut record = ConsentRecord {
        id: last_id.max(max_id) + 1,
        subject_kind: event.subject_kind.clone(),
        subject: event.subject.clone(),
        event: event.event,
        purpose: event.purpose.clone(),
        text_version,
        channel: event.channel.clone(),
        evidence: event.evidence.clone(),
        at: event.at.clone().unwrap_or_else(|| recorded_at.clone()),
        recorded_at,
        key_id: event.key_id,
        prev_sha256,
        sha256: String::new(),
    };
    record.sha256 = chain_sha256(&record.prev_sha256, &record);
    insert_record(tx, &record)?;

    let action = match record.event {
        EventKind::Granted => "consent_granted",
        EventKind::Withdrawn => "consent_withdrawn",
    };
    let fields = serde_json::json!({
        "consent_event": record.id,
        "subject_kind": record.subject_kind,
        "purpose": record.purpose,
        "text_version": record.text_version,
    });
    journal_by(tx, action, None, record.key_id, &fields)?;
    Ok(Recorded::Appended(record))
}

/// Counts of the rows [`stop_subject`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Leads that waited for the model and now need consent again.
    pub leads: usize,
    /// Drafts that waited for review and will not be sent.
    pub drafts: usize,
}

/// Stops the processing of a subject's leads inside the caller's transaction: leads not yet
/// qualified become `consent_required` and lose their redaction mapping, and drafts waiting
/// for review become `consent_withdrawn`.
///
/// NOTE: qualified leads keep their data until a retention run destroys it, and their own
/// status stays `pending_review` although their draft becomes `consent_withdrawn`.
pub fn stop_subject(
    tx: &Transaction<'_>,
    subject_kind: &str,
    subject: &str,
) -> Result<Stopped, StoreError> {
    let drafts = tx.execute(
        "UPDATE drafts SET status = 'consent_withdrawn' WHERE status = 'pending_review' \
         AND lead_id IN (SELECT id FROM leads WHERE subject_kind = ?1 AND subject = ?2)",
        params![subject_kind, subject],
    )?;
    tx.execute(
        "DELETE FROM redaction_mappings WHERE lead_id IN (SELECT id FROM leads \
         WHERE subject_kind = ?1 AND subject = ?2 AND status = 'received')",
        params![subject_kind, subject],
    )?;
    let leads = tx.execute(
        "UPDATE leads SET status = 'consent_required' WHERE subject_kind = ?1 AND subject = ?2 \
         AND status = 'received'",
        params![subject_kind, subject],
    )?;
    Ok(Stopped { leads, drafts })
}

/// Appends an event in its own transaction. A withdrawal with `stops_leads` also stops the
/// subject's leads (see [`stop_subject`]) and, when it is new, runs `on_withdrawal` in the
/// same transaction.
pub fn record_event(
    conn: &mut Connection,
    event: &NewConsentEvent,
    stops_leads: bool,
    on_withdrawal: Option<&WithdrawalHook>,
) -> Result<(Recorded, Stopped), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded = append_event(&tx, event)?;
    let mut stopped = Stopped::default();
    if stops_leads && event.event == EventKind::Withdrawn {
        stopped = stop_subject(&tx, &event.subject_kind, &event.subject)?;
        after_withdrawal(&tx, &recorded, on_withdrawal)?;
    }
    tx.commit()?;
    Ok((recorded, stopped))
}

/// Runs `hook` for a newly appended withdrawal. A repeated event was handled when it was
/// first logged, so it runs nothing.
pub fn after_withdrawal(
    tx: &Transaction<'_>,
    recorded: &Recorded,
    hook: Option<&WithdrawalHook>,
) -> Result<(), StoreError> {
    match (recorded, hook) {
        (Recorded::Appended(record), Some(hook)) if record.event == EventKind::Withdrawn => {
            hook(tx, record)
        }
        _ => Ok(()),
    }
}

/// Returns true when the subject's latest event for `purpose`, in log order, is a grant.
pub fn has_consent(
    conn: &Connection,
    subject_kind: &str,
    subject: &str,
    purpose: &str,
) -> Result<bool, StoreError> {
    let latest: Option<String> = conn
        .query_row(
            "SELECT event FROM consent_log WHERE subject_kind = ?1 AND subject = ?2 \
             AND purpose = ?3 ORDER BY id DESC LIMIT 1",
            params![subject_kind, subject, purpose],
            |row| row.get(0),
        )
        .optional()?;
    Ok(latest.as_deref() == Some("granted"))
}

/// Returns the events of one subject, oldest first.
pub fn subject_events(
    conn: &Connection,
    subject_kind: &str,
    subject: &str,
) -> Result<Vec<ConsentRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM consent_log WHERE subject_kind = ?1 AND subject = ?2 \
         ORDER BY id"
    ))?;
    let rows = statement
        .query_map(params![subject_kind, subject], record_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(decode_record).collect()
}

/// Calls `visit` with every row of the log in order.
pub fn read_log(
    conn: &Connection,
    mut visit: impl FnMut(ConsentRecord) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM consent_log ORDER BY id"
    ))?;
    let mut rows = statement.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        visit(decode_record(record_from_row(row)?)?)?;
        count += 1;
    }
    Ok(count)
}

fn chain_error(id: Option<i64>, kind: &str, message: String) -> Option<ChainError> {
    Some(ChainError {
        id,
        kind: kind.to_string(),
        message,
    })
}

/// The hashes of a consent event the retention job removed.
struct PrunedRow {
    id: i64,
    prev_sha256: String,
    sha256: String,
}

fn pruned_rows(conn: &Connection) -> Result<Vec<PrunedRow>, StoreError> {
    let mut statement =
        conn.prepare("SELECT id, prev_sha256, sha256 FROM consent_log_pruned ORDER BY id")?;
    let rows = statement
        .query_map([], |row| {
            Ok(PrunedRow {
                id: row.get(0)?,
                prev_sha256: row.get(1)?,
                sha256: row.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The state of a chain check as it walks the log and the pruned rows in id order.
struct ChainWalk {
    expected_prev: String,
    last_id: Option<i64>,
    error: Option<ChainError>,
}

impl ChainWalk {
    /// Links a pruned row, whose content is gone, by its stored hashes alone.
    fn pruned(&mut self, row: &PrunedRow) {
        if self.error.is_some() {
            return;
        }
        if row.prev_sha256 != self.expected_prev {
            self.error = chain_error(
                Some(row.id),
                "chain_broken",
                format!(
                    "pruned row {} does not follow the row before it: a row was removed, \
                     inserted or reordered",
                    row.id
                ),
            );
        }
        self.expected_prev = row.sha256.clone();
        self.last_id = Some(row.id);
    }

    fn record(&mut self, record: &ConsentRecord) {
        if self.error.is_some() {
            return;
        }
        if record.prev_sha256 != self.expected_prev {
            self.error = chain_error(
                Some(record.id),
                "chain_broken",
                format!(
                    "row {} does not follow the row before it: a row was removed, inserted \
                     or reordered",
                    record.id
                ),
            );
        } else if chain_sha256(&record.prev_sha256, record) != record.sha256 {
            self.error = chain_error(
                Some(record.id),
                "content_changed",
                format!(
                    "row {} does not match its hash: the row was changed",
                    record.id
                ),
            );
        }
        self.expected_prev = record.sha256.clone();
        self.last_id = Some(record.id);
    }
}

/// Recomputes the hash chain and compares its end with the head. Rows the retention job
/// removed are linked by the hashes it kept in `consent_log_pruned`, so a pruned log still
/// verifies, and a row removed without such a record breaks the chain.
///
/// NOTE: someone who drops the triggers can also write a pruned record for a row they
/// remove, and then that removal passes. An edited row is still found.
pub fn verify_chain(conn: &Connection) -> Result<ChainReport, StoreError> {
    let pruned = pruned_rows(conn)?;
    let mut next_pruned = pruned.iter().peekable();
    let mut walk = ChainWalk {
        expected_prev: GENESIS_SHA256.to_string(),
        last_id: None,
        error: None,
    };
    let rows = read_log(conn, |record| {
        while let Some(row) = next_pruned.next_if(|row| row.id < record.id) {
            walk.pruned(row);
        }
        if next_pruned.peek().is_some_and(|row| row.id == record.id) && walk.error.is_none() {
            walk.error = chain_error(
                Some(record.id),
                "chain_broken",
                format!(
                    "row {} is both in the log and among the pruned rows",
                    record.id
                ),
            );
        }
        walk.record(&record);
        Ok(())
    })?;
    for row in next_pruned {
        walk.pruned(row);
    }
    let ChainWalk {
        expected_prev,
        last_id,
        mut error,
    } = walk;
    let head: Option<(i64, String)> = conn
        .query_row(
            "SELECT last_id, sha256 FROM consent_log_head WHERE single = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if error.is_none() {
        let matches = match (&head, last_id) {
            (None, None) => true,
            (Some((head_id, head_sha)), Some(id)) => *head_id == id && *head_sha == expected_prev,
            _ => false,
        };
        if !matches {
            error = chain_error(
                None,
                "head_mismatch",
                format!(
                    "the log ends at row {} but its head names row {}: rows were removed \
                     from the end, or the head was changed",
                    last_id.map_or("none".to_string(), |id| id.to_string()),
                    head.as_ref()
                        .map_or("none".to_string(), |(id, _)| id.to_string())
                ),
            );
        }
    }
    Ok(ChainReport {
        valid: error.is_none(),
        rows,
        pruned: pruned.len() as u64,
        last_sha256: last_id.map(|_| expected_prev),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn sample_text() -> NewConsentText {
        NewConsentText {
            purpose: "lead_processing".into(),
            operator: "ООО «Пример»".into(),
            categories: vec!["имя".into()],
            operations: vec!["хранение".into()],
            term: "один год".into(),
            withdrawal: "напишите нам".into(),
            policy_url: "https://example.ru/privacy".into(),
            body: "Согласие".into(),
        }
    }

    fn event(subject: &str, kind: EventKind, evidence: &str) -> NewConsentEvent {
        NewConsentEvent {
            subject_kind: "phone".into(),
            subject: subject.into(),
            event: kind,
            purpose: "lead_processing".into(),
            text_version: None,
            channel: "telegram".into(),
            evidence: evidence.into(),
            at: None,
            key_id: None,
        }
    }

    fn seeded_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("test.db"),
            &crate::store::DbKey::Passphrase("test key".into()),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        assert!(
            store
                .call_blocking(|c| seed_text(c, &sample_text()))
                .unwrap()
        );
        (dir, store)
    }

    #[test]
    fn latest_event_decides_consent() -> Result<(), StoreError> {
        let (_dir, store) = seeded_store();
        let phone = "+79170000001";
        let check = |store: &Store| {
            store.call_blocking(|c| has_consent(c, "phone", phone, "lead_processing"))
        };
        assert!(!check(&store)?);
        store.call_blocking(|c| {
            record_event(c, &event(phone, EventKind::Granted, "m1"), true, None)
        })?;
        assert!(check(&store)?);
        let (repeat, _) = store.call_blocking(|c| {
            record_event(c, &event(phone, EventKind::Granted, "m1"), true, None)
        })?;
        assert!(matches!(repeat, Recorded::Repeated(_)));
        store.call_blocking(|c| {
            record_event(c, &event(phone, EventKind::Withdrawn, "m2"), true, None)
        })?;
        assert!(!check(&store)?);
        let report = store.call_blocking(|c| verify_chain(c))?;
        assert!(report.valid, "{report:?}");
        assert_eq!(report.rows, 2);
        Ok(())
    }

    #[test]
    fn used_text_cannot_change() -> Result<(), StoreError> {
        let (_dir, store) = seeded_store();
        let mut changed = sample_text();
        changed.body = "Новое согласие".into();
        let updated = store.call_blocking(|c| update_text(c, 1, &changed, None))?;
        assert_eq!(updated.body, "Новое согласие");
        store.call_blocking(|c| {
            record_event(
                c,
                &event("+79170000001", EventKind::Granted, "m1"),
                true,
                None,
            )
        })?;
        let error = store
            .call_blocking(|c| update_text(c, 1, &sample_text(), None))
            .unwrap_err();
        assert!(
            matches!(error, StoreError::ConsentTextInUse { .. }),
            "{error}"
        );
        let trigger = store.call_blocking(|c| {
            Ok(c.execute("UPDATE consent_texts SET body = 'x' WHERE version = 1", [])?)
        });
        assert!(trigger.is_err(), "the trigger let a used text change");
        Ok(())
    }

    #[test]
    fn pruned_rows_keep_chain() -> Result<(), StoreError> {
        let (_dir, store) = seeded_store();
        let first = "+79170000001";
        let second = "+79170000002";
        store.call_blocking(|c| {
            record_event(c, &event(first, EventKind::Granted, "m1"), true, None)
        })?;
        store.call_blocking(|c| {
            record_event(c, &event(second, EventKind::Granted, "m2"), true, None)
        })?;
        store.call_blocking(|c| {
            record_event(c, &event(first, EventKind::Withdrawn, "m3"), true, None)
        })?;
        // The first subject withdrew, so the retention job may prune rows 1 and 3; row 3 is
        // the last one, which the head names.
        store.call_blocking(|c| {
            let tx = c.transaction()?;
            crate::store::retention::delete_consent_events(&tx, "2999-01-01T00:00:00Z", &[1, 3])?;
            tx.commit()?;
            Ok(())
        })?;
        let report = store.call_blocking(|c| verify_chain(c))?;
        assert!(report.valid, "{report:?}");
        assert_eq!(report.rows, 1);
        assert_eq!(report.pruned, 2);

        // A row deleted outside the retention job breaks the chain at the next pruned row.
        store.call_blocking(|c| {
            c.execute_batch(
                "DROP TRIGGER consent_log_no_delete; DELETE FROM consent_log WHERE id = 2;",
            )?;
            Ok(())
        })?;
        let report = store.call_blocking(|c| verify_chain(c))?;
        assert!(!report.valid, "a deleted row went unnoticed");
        let error = report.error.expect("an error");
        assert_eq!(error.kind, "chain_broken");
        assert_eq!(error.id, Some(3));

        // Pruned hashes are recorded by the retention job alone.
        let forged = store.call_blocking(|c| {
            Ok(c.execute(
                "INSERT INTO consent_log_pruned (id, prev_sha256, sha256, pruned_at) \
                 VALUES (2, 'x', 'y', 'now')",
                [],
            )?)
        });
        assert!(
            forged.is_err(),
            "a pruned row was added outside the retention job"
        );
        Ok(())
    }

    #[test]
    fn log_rejects_update_and_delete() -> Result<(), StoreError> {
        let (_dir, store) = seeded_store();
        store.call_blocking(|c| {
            record_event(
                c,
                &event("+79170000001", EventKind::Granted, "m1"),
                true,
                None,
            )
        })?;
        let update = store
            .call_blocking(|c| Ok(c.execute("UPDATE consent_log SET event = 'withdrawn'", [])?));
        assert!(update.is_err(), "UPDATE of the log succeeded");
        let delete = store.call_blocking(|c| Ok(c.execute("DELETE FROM consent_log", [])?));
        assert!(delete.is_err(), "DELETE from the log succeeded");
        Ok(())
    }
}
