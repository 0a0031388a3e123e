//! The database schema as an ordered list of migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. At open, the missing ones
//! run in one transaction, so a database is never left half migrated. A migration, once
//! released, is never edited: a change is a new entry at the end.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: leads, redaction mappings, qualifications, drafts, templates and the journal.
    r#"
    CREATE TABLE leads (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        external_id TEXT NOT NULL,
        -- The message with personal data replaced by placeholders; the raw text is not kept.
        redacted_text TEXT NOT NULL,
        -- The placeholder of contact.name, used to address the client in a draft.
        name_placeholder TEXT,
        received_at TEXT,
        created_at TEXT NOT NULL,
        -- received, pending_review, spam or failed.
        status TEXT NOT NULL,
        special_category INTEGER NOT NULL,
        UNIQUE (channel, external_id)
    );
    -- NOTE: the original values are stored in plain text until database encryption lands.
    CREATE TABLE redaction_mappings (
        lead_id INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
        placeholder TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        -- JSON array with the original text of every occurrence, in order.
        occurrences TEXT NOT NULL,
        PRIMARY KEY (lead_id, placeholder)
    );
    CREATE TABLE qualifications (
        lead_id INTEGER PRIMARY KEY REFERENCES leads (id) ON DELETE CASCADE,
        service TEXT NOT NULL,
        intent TEXT NOT NULL,
        urgency TEXT NOT NULL,
        temperature TEXT NOT NULL,
        language TEXT NOT NULL,
        missing_fields TEXT NOT NULL,
        summary TEXT NOT NULL,
        score INTEGER NOT NULL,
        model_sha256 TEXT NOT NULL,
        prompt_version TEXT NOT NULL,
        queue_ms REAL NOT NULL,
        prompt_ms REAL NOT NULL,
        generate_ms REAL NOT NULL,
        total_ms REAL NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE response_templates (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        service TEXT,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        active INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX response_templates_version
        ON response_templates (kind, ifnull(service, ''), version);
    CREATE TABLE drafts (
        id INTEGER PRIMARY KEY,
        lead_id INTEGER NOT NULL UNIQUE REFERENCES leads (id) ON DELETE CASCADE,
        -- The draft with placeholders; values are filled in only when it is shown.
        text TEXT NOT NULL,
        template_kind TEXT NOT NULL,
        template_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    -- What was done to which lead; `fields` never holds personal data.
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        lead_id INTEGER,
        fields TEXT NOT NULL
    );
    "#,
];

/// Applies the migrations the database lacks and returns the schema version.
///
/// # Errors
/// [`StoreError::NewerSchema`] when the file was written by a newer leadgate, and any
/// SQLite error of the migration (which then leaves the database unchanged).
pub fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    let tx = conn.transaction()?;
    for migration in &MIGRATIONS[current..] {
        tx.execute_batch(migration)?;
    }
    // PRAGMA takes no bound parameters; the value is a count from this file.
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()?;
    Ok(MIGRATIONS.len())
}
