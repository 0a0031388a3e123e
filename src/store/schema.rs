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
    // 2: template versions with their author, draft review, replies for the bot, webhook
    // deliveries and staff page sessions.
    r#"
    ALTER TABLE response_templates ADD COLUMN saved_by TEXT NOT NULL DEFAULT 'shipped';
    ALTER TABLE response_templates ADD COLUMN saved_key_id INTEGER;
    CREATE UNIQUE INDEX response_templates_one_active
        ON response_templates (kind, ifnull(service, '')) WHERE active = 1;
    -- A saved version never changes and is never removed; only its `active` flag moves.
    CREATE TRIGGER response_templates_immutable
        BEFORE UPDATE OF kind, service, version, body, saved_by, saved_key_id, created_at
        ON response_templates
        BEGIN SELECT RAISE(ABORT, 'template versions are immutable'); END;
    CREATE TRIGGER response_templates_kept
        BEFORE DELETE ON response_templates
        BEGIN SELECT RAISE(ABORT, 'template versions are never deleted'); END;

    ALTER TABLE drafts ADD COLUMN template_service TEXT;
    -- The text staff approved when they changed it, with placeholders like `text`.
    ALTER TABLE drafts ADD COLUMN edited_text TEXT;
    ALTER TABLE drafts ADD COLUMN reject_reason TEXT;
    -- The key name at review time and its id; the id is NULL where no keys are in use.
    ALTER TABLE drafts ADD COLUMN reviewed_by TEXT;
    ALTER TABLE drafts ADD COLUMN reviewed_key_id INTEGER;
    ALTER TABLE drafts ADD COLUMN reviewed_at TEXT;
    CREATE INDEX drafts_status ON drafts (status, id);
    -- The drafted text stays as the template produced it; an edit goes to `edited_text`.
    CREATE TRIGGER drafts_original_kept
        BEFORE UPDATE OF text ON drafts
        BEGIN SELECT RAISE(ABORT, 'the drafted text is kept as drafted'); END;

    -- Approved replies in approval order. AUTOINCREMENT never reuses an id, so the id is a
    -- polling cursor that neither skips nor repeats a reply.
    CREATE TABLE replies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        draft_id INTEGER NOT NULL UNIQUE REFERENCES drafts (id) ON DELETE CASCADE,
        lead_id INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
        -- With placeholders; values are filled in only when the reply is sent or shown.
        text TEXT NOT NULL,
        edited INTEGER NOT NULL,
        approved_at TEXT NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        reply_id INTEGER PRIMARY KEY REFERENCES replies (id) ON DELETE CASCADE,
        -- pending, delivered or failed.
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        -- Unix time in milliseconds of the next attempt while pending.
        next_attempt_ms INTEGER NOT NULL,
        -- The HTTP status of the last attempt, NULL when no response came.
        last_status INTEGER,
        last_error TEXT,
        delivered_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
    -- Signed-in staff page sessions; the cookie holds the token, the table its SHA-256.
    CREATE TABLE ui_sessions (
        token_sha256 TEXT PRIMARY KEY,
        key_id INTEGER NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        -- Unix time in seconds.
        expires_at INTEGER NOT NULL
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
