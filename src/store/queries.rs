//! The statements of the store, one function per unit of work, each in one transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use super::consent::{
    EventKind, NewConsentEvent, WithdrawalHook, after_withdrawal, append_event, has_consent,
    stop_subject,
};
use super::journal::{Actor, Entry};
use super::{StoreError, now_rfc3339};
use crate::redact::{Mapping, MappingEntry, PiiKind};

/// A validated, redacted lead ready to be written.
pub struct NewLead {
    pub channel: String,
    pub external_id: String,
    pub redacted_text: String,
    pub name_placeholder: Option<String>,
    pub received_at: Option<String>,
    pub special_category: bool,
    pub mapping: Mapping,
    /// The API key that sent the lead; `None` for the command line.
    pub key_id: Option<i64>,
    /// The lead's subject as (kind, normalised value); `None` for the command line.
    pub subject: Option<(String, String)>,
}

/// The consent check of a lead.
pub struct LeadGate {
    /// The purpose the subject must have granted, such as `lead_processing`.
    pub purpose: String,
    /// A consent event the same request carries, logged before the check.
    pub consent: Option<NewConsentEvent>,
    /// Runs when that event is a new withdrawal, in the transaction that logs it.
    pub on_withdrawal: Option<WithdrawalHook>,
}

/// The outcome of [`insert_lead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored with its mapping; it waits for the model.
    Created(i64),
    /// Stored redacted and without its mapping, because the subject has no valid consent.
    ConsentRequired(i64),
    /// A lead stored as `consent_required` whose subject has consented since; it is stored
    /// again from this request's text and waits for the model.
    Reopened(i64),
    /// The (channel, external_id) pair was already stored under this id.
    Existing(i64),
    /// Another API key already sent a lead with this (channel, external_id); nothing was
    /// stored or logged.
    OtherKey,
}

/// The fields of a stored lead that the qualification step reads.
pub struct LeadWork {
    pub id: i64,
    /// received (waits for the model) or a final status.
    pub status: String,
    /// The lead's subject as (kind, normalised value); `None` for the command line.
    pub subject: Option<(String, String)>,
    pub channel: String,
    pub redacted_text: String,
    pub name_placeholder: Option<String>,
    pub mapping: Mapping,
}

#[derive(Debug, Clone, Serialize)]
pub struct QualificationRow {
    pub service: String,
    pub intent: String,
    pub urgency: String,
    pub temperature: String,
    pub language: String,
    pub missing_fields: Vec<String>,
    pub summary: String,
    pub score: u8,
    pub model_sha256: String,
    pub prompt_version: String,
    pub queue_ms: f64,
    pub prompt_ms: f64,
    pub generate_ms: f64,
    pub total_ms: f64,
}

/// A draft with placeholders, as stored.
#[derive(Debug, Clone)]
pub struct DraftRow {
    pub text: String,
    pub template_kind: String,
    pub template_version: i64,
    /// The service of the template version used, `None` for the kind's general one.
    pub template_service: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TemplateRow {
    pub kind: String,
    pub service: Option<String>,
    pub version: i64,
    pub body: String,
}

/// A stored lead with whatever processing has finished.
pub struct LeadRecord {
    pub id: i64,
    /// The API key that sent the lead; `None` for the command line.
    pub key_id: Option<i64>,
    pub status: String,
    pub qualification: Option<QualificationRow>,
    pub draft: Option<DraftRow>,
    pub mapping: Mapping,
}

/// Writes a lead and a journal entry in one transaction, or returns the id of the lead
/// already stored under the same (channel, external_id).
///
/// With a `gate`, the consent the request carries is logged first, and the lead keeps its
/// mapping (the original values) only when its subject has a valid consent. Without one
/// (the command line), the lead is stored with its mapping.
pub fn insert_lead(
    conn: &mut Connection,
    lead: &NewLead,
    gate: Option<&LeadGate>,
) -> Result<Inserted, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<(i64, String, Option<i64>)> = tx
        .query_row(
            "SELECT id, status, key_id FROM leads WHERE channel = ?1 AND external_id = ?2",
            params![lead.channel, lead.external_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    if existing
        .as_ref()
        .is_some_and(|(_, _, key_id)| *key_id != lead.key_id)
    {
        return Ok(Inserted::OtherKey);
    }
    let consented = match (gate, &lead.subject) {
        (Some(gate), Some((kind, subject))) => {
            if let Some(event) = &gate.consent {
                let recorded = append_event(&tx, event)?;
                if event.event == EventKind::Withdrawn {
                    stop_subject(&tx, kind, subject)?;
                    after_withdrawal(&tx, &recorded, gate.on_withdrawal.as_ref())?;
                }
            }
            has_consent(&tx, kind, subject, &gate.purpose)?
        }
        // A lead without a gate is not checked, and one without a subject cannot consent.
        (Some(_), None) => false,
        (None, _) => true,
    };
    let inserted = match existing {
        Some((id, status, _)) if status == "consent_required" && consented => {
            reopen_lead(&tx, id, lead)?;
            Inserted::Reopened(id)
        }
        Some((id, _, _)) => Inserted::Existing(id),
        None => {
            let id = insert_new_lead(&tx, lead, consented)?;
            if consented {
                Inserted::Created(id)
            } else {
                Inserted::ConsentRequired(id)
            }
        }
    };
    tx.commit()?;
    Ok(inserted)
}

fn insert_mapping(tx: &Transaction<'_>, id: i64, mapping: &Mapping) -> Result<(), StoreError> {
    for entry in &mapping.entries {
        let occurrences =
            serde_json::to_string(&entry.occurrences).map_err(|e| StoreError::Corrupt {
                column: "occurrences",
                message: e.to_string(),
            })?;
        tx.execute(
            "INSERT INTO redaction_mappings (lead_id, placeholder, kind, value, occurrences) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                entry.placeholder,
                entry.kind.as_str(),
                entry.value,
                occurrences
            ],
        )?;
    }
    Ok(())
}

fn insert_new_lead(
    tx: &Transaction<'_>,
    lead: &NewLead,
    consented: bool,
) -> Result<i64, StoreError> {
    let status = if consented {
        "received"
    } else {
        "consent_required"
    };
    let (subject_kind, subject) = lead.subject.clone().unzip();
    tx.execute(
        "INSERT INTO leads (channel, external_id, redacted_text, name_placeholder, received_at, \
         created_at, status, special_category, key_id, subject_kind, subject) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            lead.channel,
            lead.external_id,
            lead.redacted_text,
            lead.name_placeholder,
            lead.received_at,
            now_rfc3339(),
            status,
            lead.special_category,
            lead.key_id,
            subject_kind,
            subject,
        ],
    )?;
    let id = tx.last_insert_rowid();
    if consented {
        insert_mapping(tx, id, &lead.mapping)?;
    }
    let fields = serde_json::json!({
        "channel": lead.channel,
        "bytes": lead.redacted_text.len(),
        "placeholders": lead.mapping.len(),
        "special_category": lead.special_category,
        "status": status,
    });
    journal_by(tx, "lead_received", Some(id), lead.key_id, &fields)?;
    Ok(id)
}

/// Stores a `consent_required` lead again from a new request, now with its mapping.
fn reopen_lead(tx: &Transaction<'_>, id: i64, lead: &NewLead) -> Result<(), StoreError> {
    let (subject_kind, subject) = lead.subject.clone().unzip();
    tx.execute(
        "UPDATE leads SET redacted_text = ?1, name_placeholder = ?2, received_at = ?3, \
         special_category = ?4, subject_kind = ?5, subject = ?6, status = 'received' \
         WHERE id = ?7",
        params![
            lead.redacted_text,
            lead.name_placeholder,
            lead.received_at,
            lead.special_category,
            subject_kind,
            subject,
            id,
        ],
    )?;
    tx.execute(
        "DELETE FROM redaction_mappings WHERE lead_id = ?1",
        params![id],
    )?;
    insert_mapping(tx, id, &lead.mapping)?;
    let fields = serde_json::json!({
        "bytes": lead.redacted_text.len(),
        "placeholders": lead.mapping.len(),
    });
    journal_by(tx, "lead_reopened", Some(id), lead.key_id, &fields)?;
    Ok(())
}

/// Marks a lead that waited for the model as `consent_required` and removes its mapping,
/// because its subject has no valid consent any more. Returns false when the lead no longer
/// waited.
pub fn block_lead(conn: &mut Connection, lead_id: i64) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE leads SET status = 'consent_required' WHERE id = ?1 AND status = 'received'",
        params![lead_id],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM redaction_mappings WHERE lead_id = ?1",
        params![lead_id],
    )?;
    journal(&tx, "lead_blocked", Some(lead_id), &serde_json::json!({}))?;
    tx.commit()?;
    Ok(true)
}

/// Returns the status of lead `id`, or `None` when it is unknown.
pub fn lead_status(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT status FROM leads WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?)
}

/// Appends a journal entry of the server itself. `fields` must hold ids, counts and labels
/// only.
pub fn journal(
    conn: &Connection,
    action: &str,
    lead_id: Option<i64>,
    fields: &serde_json::Value,
) -> Result<(), StoreError> {
    journal_by(conn, action, lead_id, None, fields)
}

/// Appends a journal entry of the holder of API key `key_id`, or of the server itself when
/// it is `None`. `fields` must hold ids, counts and labels only.
pub fn journal_by(
    conn: &Connection,
    action: &str,
    lead_id: Option<i64>,
    key_id: Option<i64>,
    fields: &serde_json::Value,
) -> Result<(), StoreError> {
    let actor = match key_id {
        Some(id) => {
            let role: String = conn.query_row(
                "SELECT role FROM api_keys WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )?;
            let role = super::keys::Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
                column: "role",
                message: format!("unknown role `{role}`"),
            })?;
            Actor::Key { id, role }
        }
        None => Actor::System,
    };
    let mut entry = Entry::new(action, actor);
    entry.lead_id = lead_id;
    entry.details = fields.clone();
    super::journal::append(conn, &entry)?;
    Ok(())
}

pub(crate) fn load_mapping(conn: &Connection, lead_id: i64) -> Result<Mapping, StoreError> {
    let mut statement = conn.prepare(
        "SELECT placeholder, kind, value, occurrences FROM redaction_mappings \
         WHERE lead_id = ?1 ORDER BY rowid",
    )?;
    let rows = statement.query_map(params![lead_id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    let mut mapping = Mapping::default();
    for row in rows {
        let (placeholder, kind, value, occurrences) = row?;
        let kind = PiiKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            column: "kind",
            message: format!("unknown placeholder kind `{kind}`"),
        })?;
        let occurrences: Vec<String> =
            serde_json::from_str(&occurrences).map_err(|e| StoreError::Corrupt {
                column: "occurrences",
                message: e.to_string(),
            })?;
        mapping.entries.push(MappingEntry {
            placeholder,
            kind,
            value,
            occurrences,
        });
    }
    Ok(mapping)
}

/// Returns what the qualification step needs of lead `id`, or `None` when it is unknown.
pub fn load_work(conn: &Connection, id: i64) -> Result<Option<LeadWork>, StoreError> {
    let row = conn
        .query_row(
            "SELECT channel, redacted_text, name_placeholder, status, subject_kind, subject \
             FROM leads WHERE id = ?1",
            params![id],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((channel, redacted_text, name_placeholder, status, subject_kind, subject)) = row
    else {
        return Ok(None);
    };
    Ok(Some(LeadWork {
        id,
        status,
        subject: subject_kind.zip(subject),
        channel,
        redacted_text,
        name_placeholder,
        mapping: load_mapping(conn, id)?,
    }))
}

/// Returns the ids of leads accepted but not yet qualified, oldest first.
pub fn unfinished_leads(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let mut statement =
        conn.prepare("SELECT id FROM leads WHERE status = 'received' ORDER BY id")?;
    let ids = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Stores a qualification, the draft (if any) and the lead's new status in one transaction.
/// Returns false, storing nothing, when the lead no longer waits for the model (its
/// subject withdrew consent meanwhile).
pub fn finish_lead(
    conn: &mut Connection,
    lead_id: i64,
    status: &str,
    qualification: &QualificationRow,
    draft: Option<&DraftRow>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE leads SET status = ?1 WHERE id = ?2 AND status = 'received'",
        params![status, lead_id],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    let q = qualification;
    let missing = serde_json::to_string(&q.missing_fields).map_err(|e| StoreError::Corrupt {
        column: "missing_fields",
        message: e.to_string(),
    })?;
    tx.execute(
        "INSERT OR REPLACE INTO qualifications (lead_id, service, intent, urgency, temperature, \
         language, missing_fields, summary, score, model_sha256, prompt_version, queue_ms, \
         prompt_ms, generate_ms, total_ms, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            lead_id,
            q.service,
            q.intent,
            q.urgency,
            q.temperature,
            q.language,
            missing,
            q.summary,
            q.score,
            q.model_sha256,
            q.prompt_version,
            q.queue_ms,
            q.prompt_ms,
            q.generate_ms,
            q.total_ms,
            now_rfc3339(),
        ],
    )?;
    if let Some(draft) = draft {
        tx.execute(
            "INSERT OR REPLACE INTO drafts (lead_id, text, template_kind, template_version, \
             template_service, status, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending_review', ?6)",
            params![
                lead_id,
                draft.text,
                draft.template_kind,
                draft.template_version,
                draft.template_service,
                now_rfc3339()
            ],
        )?;
    }
    let fields = serde_json::json!({
        "status": status,
        "service": q.service,
        "intent": q.intent,
        "score": q.score,
        "prompt_version": q.prompt_version,
        "template_kind": draft.map(|d| d.template_kind.as_str()),
    });
    journal(&tx, "lead_qualified", Some(lead_id), &fields)?;
    tx.commit()?;
    Ok(true)
}

/// Marks a lead whose processing failed, so it is not retried at every start.
pub fn fail_lead(conn: &mut Connection, lead_id: i64, reason: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE leads SET status = 'failed' WHERE id = ?1",
        params![lead_id],
    )?;
    journal(
        &tx,
        "lead_failed",
        Some(lead_id),
        &serde_json::json!({ "reason": reason }),
    )?;
    tx.commit()?;
    Ok(())
}

pub(crate) fn load_qualification(
    conn: &Connection,
    lead_id: i64,
) -> Result<Option<QualificationRow>, StoreError> {
    let row = conn
        .query_row(
            "SELECT service, intent, urgency, temperature, language, missing_fields, summary, \
             score, model_sha256, prompt_version, queue_ms, prompt_ms, generate_ms, total_ms \
             FROM qualifications WHERE lead_id = ?1",
            params![lead_id],
            |row| {
                Ok((
                    QualificationRow {
                        service: row.get(0)?,
                        intent: row.get(1)?,
                        urgency: row.get(2)?,
                        temperature: row.get(3)?,
                        language: row.get(4)?,
                        missing_fields: Vec::new(),
                        summary: row.get(6)?,
                        score: row.get(7)?,
                        model_sha256: row.get(8)?,
                        prompt_version: row.get(9)?,
                        queue_ms: row.get(10)?,
                        prompt_ms: row.get(11)?,
                        generate_ms: row.get(12)?,
                        total_ms: row.get(13)?,
                    },
                    row.get::<_, String>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((mut qualification, missing)) = row else {
        return Ok(None);
    };
    qualification.missing_fields =
        serde_json::from_str(&missing).map_err(|e| StoreError::Corrupt {
            column: "missing_fields",
            message: e.to_string(),
        })?;
    Ok(Some(qualification))
}

/// Returns lead `id` with its qualification, draft and mapping, or `None` when unknown.
pub fn load_lead(conn: &Connection, id: i64) -> Result<Option<LeadRecord>, StoreError> {
    let row: Option<(String, Option<i64>)> = conn
        .query_row(
            "SELECT status, key_id FROM leads WHERE id = ?1",
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((status, key_id)) = row else {
        return Ok(None);
    };
    let draft = conn
        .query_row(
            "SELECT text, template_kind, template_version, template_service FROM drafts \
             WHERE lead_id = ?1",
            params![id],
            |row| {
                Ok(DraftRow {
                    text: row.get(0)?,
                    template_kind: row.get(1)?,
                    template_version: row.get(2)?,
                    template_service: row.get(3)?,
                })
            },
        )
        .optional()?;
    Ok(Some(LeadRecord {
        id,
        key_id,
        status,
        qualification: load_qualification(conn, id)?,
        draft,
        mapping: load_mapping(conn, id)?,
    }))
}

/// Inserts each shipped template as version 1 unless its (kind, service) already has one.
pub fn seed_templates(
    conn: &mut Connection,
    templates: &[(String, Option<String>, String)],
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut inserted = 0;
    for (kind, service, body) in templates {
        let count: i64 = tx.query_row(
            "SELECT count(*) FROM response_templates WHERE kind = ?1 \
             AND ifnull(service, '') = ifnull(?2, '')",
            params![kind, service],
            |row| row.get(0),
        )?;
        if count == 0 {
            tx.execute(
                "INSERT INTO response_templates (kind, service, version, body, active, \
                 created_at) VALUES (?1, ?2, 1, ?3, 1, ?4)",
                params![kind, service, body, now_rfc3339()],
            )?;
            inserted += 1;
        }
    }
    tx.commit()?;
    Ok(inserted)
}

/// Returns the active templates, newest version first within each (kind, service).
pub fn active_templates(conn: &Connection) -> Result<Vec<TemplateRow>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT kind, service, version, body FROM response_templates WHERE active = 1 \
         ORDER BY kind, service, version DESC",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok(TemplateRow {
                kind: row.get(0)?,
                service: row.get(1)?,
                version: row.get(2)?,
                body: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DbKey, Store};

    fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        let key = DbKey::Passphrase("test key".into());
        Store::open(path, &key, std::time::Duration::from_secs(5))
    }

    fn test_store() -> (tempfile::TempDir, Store) {
        crate::store::temporary_store()
    }

    fn sample_lead() -> NewLead {
        let redaction = crate::redact::redact("Меня зовут Гульнара, телефон +7 917 482-16-39");
        NewLead {
            channel: "telegram".into(),
            external_id: "m-1".into(),
            redacted_text: redaction.text,
            name_placeholder: None,
            received_at: None,
            special_category: false,
            mapping: redaction.mapping,
            key_id: None,
            subject: None,
        }
    }

    #[test]
    fn repeated_external_id_returns_existing() -> Result<(), StoreError> {
        let (_dir, store) = test_store();
        let first = store.call_blocking(|c| insert_lead(c, &sample_lead(), None))?;
        let second = store.call_blocking(|c| insert_lead(c, &sample_lead(), None))?;
        let Inserted::Created(id) = first else {
            panic!("first insert was {first:?}");
        };
        assert_eq!(second, Inserted::Existing(id));
        Ok(())
    }

    #[test]
    fn mapping_round_trips() -> Result<(), StoreError> {
        let (_dir, store) = test_store();
        let lead = sample_lead();
        let Inserted::Created(id) = store.call_blocking(|c| insert_lead(c, &lead, None))? else {
            panic!("not created");
        };
        let work = store
            .call_blocking(|c| load_work(c, id))?
            .expect("stored lead");
        assert_eq!(work.mapping, lead.mapping);
        assert!(!work.redacted_text.contains("482-16-39"));
        Ok(())
    }

    #[test]
    fn reopening_keeps_schema_version() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        drop(open(&path)?);
        let store = open(&path)?;
        let version: i64 =
            store.call_blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))?;
        assert_eq!(version, 4);
        Ok(())
    }
}
