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
    // 2: API keys with roles, consent texts, the consent log, and who created each lead.
    r#"
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('bot', 'staff', 'admin')),
        -- The first characters of the key, shown by `keys list` so a person can tell keys apart.
        prefix TEXT NOT NULL,
        -- Hex SHA-256 of the whole key; the key itself is never stored.
        key_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    -- The key that created the lead; NULL for leads from the command line.
    ALTER TABLE leads ADD COLUMN key_id INTEGER REFERENCES api_keys (id);
    -- Whose consent the lead needs: kind `phone` (E.164), `email`, `handle` or `lead` (a
    -- consent for this lead alone, subject `CHANNEL/EXTERNAL_ID`). NULL for leads from the
    -- command line, which are not checked for consent.
    ALTER TABLE leads ADD COLUMN subject_kind TEXT;
    ALTER TABLE leads ADD COLUMN subject TEXT;
    CREATE INDEX leads_subject ON leads (subject_kind, subject);
    -- The key that did the action; NULL for the server itself and the command line.
    ALTER TABLE journal ADD COLUMN key_id INTEGER;
    CREATE TABLE consent_texts (
        id INTEGER PRIMARY KEY,
        purpose TEXT NOT NULL,
        version INTEGER NOT NULL,
        operator TEXT NOT NULL,
        -- JSON arrays of strings.
        categories TEXT NOT NULL,
        operations TEXT NOT NULL,
        term TEXT NOT NULL,
        withdrawal TEXT NOT NULL,
        policy_url TEXT NOT NULL,
        -- The full text shown to the client.
        body TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        key_id INTEGER,
        UNIQUE (purpose, version)
    );
    CREATE UNIQUE INDEX consent_texts_one_active ON consent_texts (purpose) WHERE active = 1;
    -- Append-only. `sha256` is the SHA-256 of `prev_sha256` followed by the row's canonical
    -- content (see store/consent.rs), so a changed, removed or reordered row breaks the chain.
    CREATE TABLE consent_log (
        id INTEGER PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('phone', 'email', 'handle', 'lead')),
        subject TEXT NOT NULL,
        event TEXT NOT NULL CHECK (event IN ('granted', 'withdrawn')),
        purpose TEXT NOT NULL,
        text_version INTEGER NOT NULL,
        channel TEXT NOT NULL,
        -- The bot's id of the message in which the client gave or withdrew consent.
        evidence TEXT NOT NULL,
        -- When the client gave or withdrew consent; `recorded_at` is when leadgate stored it.
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        key_id INTEGER,
        prev_sha256 TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        FOREIGN KEY (purpose, text_version) REFERENCES consent_texts (purpose, version)
    );
    CREATE INDEX consent_log_subject ON consent_log (subject_kind, subject, purpose, id);
    -- The last row of the chain, so that removing rows from its end is detected too.
    CREATE TABLE consent_log_head (
        single INTEGER PRIMARY KEY CHECK (single = 1),
        last_id INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE TRIGGER consent_log_no_update BEFORE UPDATE ON consent_log
    BEGIN
        SELECT RAISE(ABORT, 'the consent log is append-only: rows cannot be changed');
    END;
    CREATE TRIGGER consent_log_no_delete BEFORE DELETE ON consent_log
    BEGIN
        SELECT RAISE(ABORT, 'the consent log is append-only: rows cannot be deleted');
    END;
    CREATE TRIGGER consent_texts_used_no_update
    BEFORE UPDATE OF purpose, version, operator, categories, operations, term, withdrawal,
        policy_url, body ON consent_texts
    WHEN EXISTS (SELECT 1 FROM consent_log
                 WHERE purpose = OLD.purpose AND text_version = OLD.version)
    BEGIN
        SELECT RAISE(ABORT, 'a consent text version used in the consent log cannot change');
    END;
    CREATE TRIGGER consent_texts_used_no_delete BEFORE DELETE ON consent_texts
    WHEN EXISTS (SELECT 1 FROM consent_log
                 WHERE purpose = OLD.purpose AND text_version = OLD.version)
    BEGIN
        SELECT RAISE(ABORT, 'a consent text version used in the consent log cannot be deleted');
    END;
    "#,
    // 3: template versions with their author, draft review, replies for the bot, webhook
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
    -- The key name at review time and its id.
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
        key_id INTEGER NOT NULL REFERENCES api_keys (id),
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        -- Unix time in seconds.
        expires_at INTEGER NOT NULL
    );
    "#,
    // 4: the journal's actor role, subject and field list, pseudonymous subjects, scheduled
    // erasures and destruction acts.
    r#"
    -- `role` is the role of `key_id`, or `system` or `cli` for actions without a key.
    ALTER TABLE journal ADD COLUMN role TEXT;
    ALTER TABLE journal ADD COLUMN subject_id INTEGER;
    -- JSON list of the names of the personal-data fields read or changed, never their values.
    ALTER TABLE journal ADD COLUMN personal_fields TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX journal_at ON journal (at);
    CREATE INDEX journal_lead ON journal (lead_id);
    CREATE INDEX journal_subject ON journal (subject_id);
    -- One row while a retention batch runs, inside its transaction. Journal rows older than
    -- `journal_cutoff` may then be deleted, and consent events of a subject and purpose whose
    -- latest event is a withdrawal before `consent_cutoff`. No committed transaction leaves a
    -- row here.
    CREATE TABLE retention_window (
        single INTEGER PRIMARY KEY CHECK (single = 1),
        journal_cutoff TEXT,
        consent_cutoff TEXT
    );
    CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
    BEGIN
        SELECT RAISE(ABORT, 'the journal is append-only: rows cannot be changed');
    END;
    CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
    WHEN NOT EXISTS (SELECT 1 FROM retention_window
                     WHERE journal_cutoff IS NOT NULL
                       AND julianday(OLD.at) < julianday(journal_cutoff))
    BEGIN
        SELECT RAISE(ABORT, 'the journal is append-only: only the retention job deletes rows past their term');
    END;
    DROP TRIGGER consent_log_no_delete;
    CREATE TRIGGER consent_log_no_delete BEFORE DELETE ON consent_log
    WHEN NOT EXISTS (
        SELECT 1 FROM retention_window w, consent_log latest
        WHERE w.consent_cutoff IS NOT NULL
          AND latest.id = (SELECT max(id) FROM consent_log m
                           WHERE m.subject_kind = OLD.subject_kind AND m.subject = OLD.subject
                             AND m.purpose = OLD.purpose)
          AND latest.event = 'withdrawn'
          AND julianday(latest.at) < julianday(w.consent_cutoff))
    BEGIN
        SELECT RAISE(ABORT, 'the consent log is append-only: only the retention job deletes events past their term');
    END;
    -- The hashes of consent events the retention job deleted, so that the chain check
    -- (store/consent.rs) still links the rows left across the gap. Rows are added only
    -- inside a retention window and never change or go.
    CREATE TABLE consent_log_pruned (
        id INTEGER PRIMARY KEY,
        prev_sha256 TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        pruned_at TEXT NOT NULL
    );
    CREATE TRIGGER consent_log_pruned_only_retention BEFORE INSERT ON consent_log_pruned
    WHEN NOT EXISTS (SELECT 1 FROM retention_window WHERE consent_cutoff IS NOT NULL)
    BEGIN
        SELECT RAISE(ABORT, 'only the retention job records pruned consent events');
    END;
    CREATE TRIGGER consent_log_pruned_no_update BEFORE UPDATE ON consent_log_pruned
    BEGIN
        SELECT RAISE(ABORT, 'pruned consent events cannot be changed');
    END;
    CREATE TRIGGER consent_log_pruned_no_delete BEFORE DELETE ON consent_log_pruned
    BEGIN
        SELECT RAISE(ABORT, 'pruned consent events cannot be deleted');
    END;
    -- Pseudonymous ids of data subjects, so that the journal and destruction acts can name a
    -- subject without holding the phone, e-mail or handle. `value` is set to NULL when the
    -- subject's data is erased; the id stays.
    CREATE TABLE subjects (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'handle')),
        value TEXT,
        created_at TEXT NOT NULL,
        erased_at TEXT
    );
    CREATE UNIQUE INDEX subjects_value ON subjects (kind, value) WHERE value IS NOT NULL;
    -- Erasures due at a later date, such as the one a withdrawal of consent schedules.
    CREATE TABLE erasure_requests (
        id INTEGER PRIMARY KEY,
        subject_id INTEGER NOT NULL REFERENCES subjects (id),
        -- Why the erasure is due, such as `consent_withdrawn`.
        reason TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        -- The erasure covers what was stored before this time, such as the withdrawal.
        data_before TEXT NOT NULL,
        due_at TEXT NOT NULL,
        done_at TEXT,
        act_id INTEGER
    );
    CREATE INDEX erasure_requests_due ON erasure_requests (due_at) WHERE done_at IS NULL;
    -- When a lead's text, mapping and draft were removed and only its statistics kept.
    ALTER TABLE leads ADD COLUMN anonymised_at TEXT;
    -- A destruction act: what was destroyed, whose, when, how and by which rule. It holds
    -- ids and category names, never the destroyed values.
    CREATE TABLE destruction_acts (
        id INTEGER PRIMARY KEY,
        -- `retention` (the scheduled job) or `subject_erase` (a request of the subject).
        kind TEXT NOT NULL CHECK (kind IN ('retention', 'subject_erase')),
        operator TEXT NOT NULL,
        -- Who ran it: `retention job`, `command line`, or `key N (admin)`.
        performed_by TEXT NOT NULL,
        started_at TEXT NOT NULL,
        -- NULL while the run goes on or after it was interrupted; a later run continues it.
        completed_at TEXT
    );
    CREATE TABLE destruction_act_items (
        id INTEGER PRIMARY KEY,
        act_id INTEGER NOT NULL REFERENCES destruction_acts (id),
        at TEXT NOT NULL,
        -- The rule's name, such as `leads_term`, and its text, such as "leads older than 365 days".
        rule TEXT NOT NULL,
        reason TEXT NOT NULL,
        -- What was destroyed: `leads`, `drafts`, `journal`, `consent_log` or `subjects`.
        category TEXT NOT NULL,
        -- JSON list of the categories of personal data, such as ["message text", "PHONE"].
        data_categories TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('deleted', 'anonymised')),
        -- JSON lists of ids; `record_ids` are ids of rows that belong to no lead, such as
        -- journal rows.
        lead_ids TEXT NOT NULL,
        subject_ids TEXT NOT NULL,
        record_ids TEXT NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE INDEX destruction_act_items_act ON destruction_act_items (act_id);
    CREATE TRIGGER destruction_acts_no_update
    BEFORE UPDATE OF id, kind, operator, performed_by, started_at ON destruction_acts
    BEGIN
        SELECT RAISE(ABORT, 'a destruction act cannot be changed');
    END;
    CREATE TRIGGER destruction_acts_complete_once
    BEFORE UPDATE OF completed_at ON destruction_acts WHEN OLD.completed_at IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, 'a completed destruction act cannot be changed');
    END;
    CREATE TRIGGER destruction_acts_no_delete BEFORE DELETE ON destruction_acts
    BEGIN
        SELECT RAISE(ABORT, 'a destruction act cannot be deleted');
    END;
    CREATE TRIGGER destruction_act_items_no_update BEFORE UPDATE ON destruction_act_items
    BEGIN
        SELECT RAISE(ABORT, 'a destruction act cannot be changed');
    END;
    CREATE TRIGGER destruction_act_items_no_delete BEFORE DELETE ON destruction_act_items
    BEGIN
        SELECT RAISE(ABORT, 'a destruction act cannot be deleted');
    END;
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
