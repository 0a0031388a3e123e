//! Requests of a data subject: export everything held on them, erase it, and the erasure
//! that a withdrawal of consent schedules.

use rusqlite::Connection;
use serde::Serialize;
use time::OffsetDateTime;

use super::ComplianceError;
use crate::config::{LeadMethod, RetentionSettings, Settings};
use crate::consent::{Subject, SubjectKind, normalize};
use crate::store::StoreError;
use crate::store::acts::{self, ActItem, ActKind, Method};
use crate::store::consent::{ConsentRecord, subject_events};
use crate::store::journal::{self, Actor, Entry, JournalRow};
use crate::store::retention::remove_lead;
use crate::store::subject::{self as stored, LeadExport};

/// The fields an export gives out, for the journal.
const EXPORTED_FIELDS: [&str; 5] = [
    "lead.text",
    "lead.personal_data",
    "lead.draft",
    "lead.qualification",
    "consent_log",
];

/// Returns the ids of the leads of `subject`: those whose subject columns name it, and
/// those with a phone, e-mail or handle in their mapping that normalises to its value.
///
/// NOTE: the mapping check reads every mapping row of the subject's kind, which is linear in
/// the number of stored leads.
pub fn lead_ids_of(conn: &Connection, subject: &Subject) -> Result<Vec<i64>, ComplianceError> {
    let mut ids = stored::leads_by_subject(conn, subject.kind.as_str(), &subject.value)?;
    if let Some(pii_kind) = subject.kind.pii_kind() {
        for (lead_id, value) in stored::mapping_values(conn, pii_kind.as_str())? {
            if normalize(subject.kind, &value).as_deref() == Some(subject.value.as_str()) {
                ids.push(lead_id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Returns the ids of stored subjects that lead `lead_id`'s phones, e-mails and handles
/// name.
fn linked_subjects(conn: &Connection, lead_id: i64) -> Result<Vec<i64>, ComplianceError> {
    let mut ids = Vec::new();
    for (pii_kind, value) in stored::lead_contacts(conn, lead_id)? {
        let kind = SubjectKind::CONTACT
            .into_iter()
            .find(|kind| kind.pii_kind().map(|kind| kind.as_str()) == Some(pii_kind.as_str()));
        let Some(kind) = kind else { continue };
        let Some(value) = normalize(kind, &value) else {
            continue;
        };
        if let Some(id) = stored::find(conn, kind.as_str(), &value)? {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The subject of an export, named by kind and pseudonymous id, never by value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectRef {
    pub kind: &'static str,
    /// `null` when leadgate stores nothing on the subject.
    pub subject_id: Option<i64>,
}

/// Everything held on one subject.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectExport {
    pub subject: SubjectRef,
    /// RFC 3339 UTC time of the export.
    pub exported_at: String,
    /// Each lead with its text and personal data restored, qualification and draft.
    #[schema(value_type = Vec<Object>)]
    pub leads: Vec<LeadExport>,
    /// Consent log rows of the subject, with their hashes in the chain.
    pub consents: Vec<ConsentRecord>,
    /// Journal rows about the subject or their leads, up to the export itself.
    pub journal: Vec<JournalRow>,
    /// Erasures scheduled for the subject and not yet done.
    pub pending_erasures: i64,
}

/// Collects everything held on `subject` and journals the export.
pub fn export(
    conn: &mut Connection,
    subject: &Subject,
    actor: Actor,
) -> Result<SubjectExport, ComplianceError> {
    let tx = conn.transaction()?;
    let lead_ids = lead_ids_of(&tx, subject)?;
    let consents = subject_events(&tx, subject.kind.as_str(), &subject.value)?;
    let mut subject_id = stored::find(&tx, subject.kind.as_str(), &subject.value)?;
    if subject_id.is_none() && !(lead_ids.is_empty() && consents.is_empty()) {
        subject_id = Some(stored::find_or_insert(
            &tx,
            subject.kind.as_str(),
            &subject.value,
        )?);
    }
    let mut leads = Vec::with_capacity(lead_ids.len());
    for id in &lead_ids {
        if let Some(lead) = stored::export_lead(&tx, *id)? {
            leads.push(lead);
        }
    }
    let journal_rows = journal::rows_about(&tx, &lead_ids, subject_id)?;
    let pending_erasures = match subject_id {
        Some(id) => stored::pending_erasures(&tx, id)?,
        None => 0,
    };
    let mut entry = Entry::new("subject_exported", actor);
    entry.subject_id = subject_id;
    entry.personal_fields = &EXPORTED_FIELDS;
    entry.details = serde_json::json!({
        "kind": subject.kind.as_str(),
        "leads": lead_ids,
        "consent_events": consents.len(),
    });
    journal::append(&tx, &entry)?;
    tx.commit()?;
    Ok(SubjectExport {
        subject: SubjectRef {
            kind: subject.kind.as_str(),
            subject_id,
        },
        exported_at: crate::store::now_rfc3339(),
        leads,
        consents,
        journal: journal_rows,
        pending_erasures,
    })
}

/// The outcome of an erasure.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EraseReport {
    /// False when nothing was held on the subject: a repeated erase finds nothing.
    pub found: bool,
    pub subject_id: Option<i64>,
    /// The leads removed.
    pub lead_ids: Vec<i64>,
    /// `deleted` or `anonymised`.
    pub method: &'static str,
    /// The destruction act; `null` when nothing was found.
    pub act_id: Option<i64>,
    /// Consent events kept to prove the consent and its withdrawal: the consent log keeps
    /// the subject's identifier, purpose, text version, channel, message id and times.
    pub consent_events_kept: usize,
}

/// The reason for an erasure, written into the act.
#[derive(Debug, Clone, Copy)]
pub enum EraseRule {
    /// The subject asked for erasure.
    SubjectRequest,
    /// The subject withdrew consent and the legal term passed.
    ConsentWithdrawn,
}

impl EraseRule {
    fn name(self) -> &'static str {
        match self {
            EraseRule::SubjectRequest => "subject_request",
            EraseRule::ConsentWithdrawn => "consent_withdrawn",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            EraseRule::SubjectRequest => "the subject requested erasure of their personal data",
            EraseRule::ConsentWithdrawn => {
                "the subject withdrew consent to processing; erasure within the legal term"
            }
        }
    }
}

pub(crate) fn method_of(method: LeadMethod) -> Method {
    match method {
        LeadMethod::Delete => Method::Deleted,
        LeadMethod::Anonymise => Method::Anonymised,
    }
}

/// Erases `subject` inside the caller's transaction, by `settings.retention.method`, adding
/// an item to act `act_id` (opened here, naming `settings.operator`, when `None` and
/// something is found). With `data_before`, only leads
/// stored before that time go, and the subject's identifiers stay for the leads after it.
pub(crate) fn erase_in(
    conn: &Connection,
    subject: &Subject,
    actor: Actor,
    settings: &Settings,
    rule: EraseRule,
    act_id: Option<i64>,
    data_before: Option<&str>,
) -> Result<EraseReport, ComplianceError> {
    let method = method_of(settings.retention.method);
    let lead_ids = leads_to_erase(conn, subject, data_before)?;
    let consents = subject_events(conn, subject.kind.as_str(), &subject.value)?;
    let known_id = stored::find(conn, subject.kind.as_str(), &subject.value)?;

    // A time-limited erasure with no lead before its limit destroys nothing, so it writes
    // no act. An unlimited one still clears the value of a stored identifier.
    if lead_ids.is_empty() && (known_id.is_none() || data_before.is_some()) {
        if let Some(id) = known_id {
            stored::finish_erasures(conn, id, None)?;
        }
        let mut entry = Entry::new("subject_erase_nothing_found", actor);
        entry.subject_id = known_id;
        entry.details = serde_json::json!({ "kind": subject.kind.as_str(), "rule": rule.name() });
        journal::append(conn, &entry)?;
        return Ok(EraseReport {
            found: false,
            subject_id: None,
            lead_ids,
            method: method.as_str(),
            act_id: None,
            consent_events_kept: consents.len(),
        });
    }

    let subject_id = match known_id {
        Some(id) => id,
        None => stored::find_or_insert(conn, subject.kind.as_str(), &subject.value)?,
    };
    let act_id = match act_id {
        Some(id) => id,
        None => acts::open(
            conn,
            ActKind::SubjectErase,
            &settings.operator.name,
            &actor.describe(),
        )?,
    };
    // The leads may name the subject by other identifiers too, such as an e-mail beside
    // the phone; their subject rows go with the leads.
    let mut subject_ids = vec![subject_id];
    for id in &lead_ids {
        for linked in linked_subjects(conn, *id)? {
            if !subject_ids.contains(&linked) {
                subject_ids.push(linked);
            }
        }
    }
    let anonymise = settings.retention.method == LeadMethod::Anonymise;
    let (removed, mut categories) = remove_leads(conn, &lead_ids, anonymise)?;

    // With a time limit, later leads may still need the identifiers, and other erasures
    // of the linked identifiers may have other limits. The retention job clears the
    // values once nothing refers to them.
    let finished = if data_before.is_none() {
        categories.push("subject identifiers".to_string());
        for id in &subject_ids {
            stored::forget_value(conn, *id)?;
        }
        subject_ids.clone()
    } else {
        vec![subject_id]
    };
    acts::add_item(
        conn,
        act_id,
        &ActItem {
            at: String::new(),
            rule: rule.name().to_string(),
            reason: rule.reason().to_string(),
            category: "leads".to_string(),
            data_categories: categories,
            method: method.as_str().to_string(),
            lead_ids: removed.clone(),
            subject_ids: subject_ids.clone(),
            record_ids: Vec::new(),
            count: removed.len() as i64,
        },
    )?;
    for id in &finished {
        stored::finish_erasures(conn, *id, Some(act_id))?;
    }

    let mut entry = Entry::new("subject_erased", actor);
    entry.subject_id = Some(subject_id);
    entry.personal_fields = &EXPORTED_FIELDS[..4];
    entry.details = serde_json::json!({
        "subjects": subject_ids,
        "rule": rule.name(),
        "method": method.as_str(),
        "leads": removed,
        "act": act_id,
        "consent_events_kept": consents.len(),
    });
    journal::append(conn, &entry)?;
    Ok(EraseReport {
        found: true,
        subject_id: Some(subject_id),
        lead_ids: removed,
        method: method.as_str(),
        act_id: Some(act_id),
        consent_events_kept: consents.len(),
    })
}

/// Returns the leads of `subject`, limited to those stored before `data_before` when set.
fn leads_to_erase(
    conn: &Connection,
    subject: &Subject,
    data_before: Option<&str>,
) -> Result<Vec<i64>, ComplianceError> {
    let lead_ids = lead_ids_of(conn, subject)?;
    let Some(before) = data_before else {
        return Ok(lead_ids);
    };
    let mut older = Vec::with_capacity(lead_ids.len());
    for id in lead_ids {
        if stored::lead_stored_before(conn, id, before)? {
            older.push(id);
        }
    }
    Ok(older)
}

/// Removes `lead_ids` and returns the ids removed and the categories of their data.
fn remove_leads(
    conn: &Connection,
    lead_ids: &[i64],
    anonymise: bool,
) -> Result<(Vec<i64>, Vec<String>), ComplianceError> {
    let mut categories: Vec<String> = Vec::new();
    let mut removed = Vec::with_capacity(lead_ids.len());
    for id in lead_ids {
        let Some(lead) = remove_lead(conn, *id, anonymise)? else {
            continue;
        };
        removed.push(*id);
        for category in lead.data_categories {
            if !categories.contains(&category) {
                categories.push(category);
            }
        }
    }
    Ok((removed, categories))
}

/// Erases everything held on `subject` at its request, in one transaction, and writes a
/// destruction act naming `settings.operator`. A repeated erase finds nothing, writes no act
/// and reports `found: false`.
pub fn erase(
    conn: &mut Connection,
    subject: &Subject,
    actor: Actor,
    settings: &Settings,
) -> Result<EraseReport, ComplianceError> {
    let tx = conn.transaction()?;
    let report = erase_in(
        &tx,
        subject,
        actor,
        settings,
        EraseRule::SubjectRequest,
        None,
        None,
    )?;
    if let Some(act_id) = report.act_id {
        acts::complete(&tx, act_id)?;
    }
    tx.commit()?;
    if report.found {
        crate::store::key::checkpoint_after_erase(conn);
    }
    Ok(report)
}

/// A scheduled erasure.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScheduledErasure {
    pub request_id: i64,
    pub subject_id: i64,
    /// RFC 3339 UTC time from which the retention job erases the subject's data.
    pub due_at: String,
}

/// Schedules the erasure that a withdrawal of consent by `kind`/`value` requires, due
/// `settings.withdrawal_erase_days` after `withdrawn_at`, inside the caller's transaction.
/// The retention job performs it once due. It covers the leads stored before
/// `withdrawn_at`, so leads sent after a new consent stay.
///
/// The consent log calls this in the transaction that logs a withdrawal for
/// `lead_processing` (see `Pipeline::withdrawal_hook`), with the subject as the log stores
/// it. A subject of kind `lead` (a consent for one lead alone) has no subject id, so it
/// returns `Ok(None)`.
///
/// NOTE: so a withdrawal of a consent of kind `lead` schedules nothing; that lead stays
/// until its retention term.
pub fn schedule_withdrawal_erasure(
    conn: &Connection,
    kind: &str,
    value: &str,
    withdrawn_at: OffsetDateTime,
    settings: &RetentionSettings,
) -> Result<Option<ScheduledErasure>, StoreError> {
    let is_contact = SubjectKind::CONTACT
        .into_iter()
        .any(|contact| contact.as_str() == kind);
    if !is_contact {
        return Ok(None);
    }
    let due = withdrawn_at + time::Duration::days(i64::from(settings.withdrawal_erase_days));
    let subject_id = stored::find_or_insert(conn, kind, value)?;
    let (request_id, due_at) = stored::schedule_erasure(
        conn,
        subject_id,
        "consent_withdrawn",
        &crate::clock::format(withdrawn_at),
        &crate::clock::format(due),
    )?;
    let mut entry = Entry::new("erasure_scheduled", Actor::System);
    entry.subject_id = Some(subject_id);
    entry.details = serde_json::json!({ "request": request_id, "due_at": due_at });
    journal::append(conn, &entry)?;
    Ok(Some(ScheduledErasure {
        request_id,
        subject_id,
        due_at,
    }))
}
