//! The retention job: removes what is past its term, in batches, and records each batch in
//! a destruction act and the journal.
//!
//! Each batch runs in its own transaction (a savepoint), so a crash loses at most the batch
//! in progress and the next run continues, adding to the act the stopped run left open. A
//! dry run does the same work inside one transaction that it rolls back, so its report
//! matches what a real run at the same time would do.

use std::time::Duration as StdDuration;

use rusqlite::Connection;
use serde::Serialize;
use time::OffsetDateTime;

use super::ComplianceError;
use super::requests::{EraseRule, erase_in, method_of};
use super::subject::{Subject, SubjectKind};
use crate::config::{LeadMethod, RetentionSettings};
use crate::store::acts::{self, ActItem, ActKind, Method};
use crate::store::journal::{self, Actor, Entry};
use crate::store::retention::{self as stored, LeadScope};
use crate::store::subject as subjects;
use crate::store::{Store, StoreError};

/// The rules in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    ScheduledErasure,
    SpecialCategoryLeads,
    Leads,
    Drafts,
    Journal,
    Subjects,
}

const RULES: [Rule; 6] = [
    Rule::ScheduledErasure,
    Rule::SpecialCategoryLeads,
    Rule::Leads,
    Rule::Drafts,
    Rule::Journal,
    Rule::Subjects,
];

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::ScheduledErasure => "consent_withdrawn",
            Rule::SpecialCategoryLeads => "special_category_term",
            Rule::Leads => "leads_term",
            Rule::Drafts => "drafts_term",
            Rule::Journal => "journal_term",
            Rule::Subjects => "unused_subject_identifiers",
        }
    }

    fn category(self) -> &'static str {
        match self {
            Rule::ScheduledErasure | Rule::SpecialCategoryLeads | Rule::Leads => "leads",
            Rule::Drafts => "drafts",
            Rule::Journal => "journal",
            Rule::Subjects => "subjects",
        }
    }
}

/// What one rule removed, or would remove in a dry run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleReport {
    pub rule: &'static str,
    pub category: &'static str,
    pub reason: String,
    pub method: &'static str,
    pub count: usize,
    pub lead_ids: Vec<i64>,
    pub subject_ids: Vec<i64>,
    pub record_ids: Vec<i64>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    pub dry_run: bool,
    /// The time the terms were measured from, RFC 3339 UTC.
    pub now: String,
    /// The destruction act; `null` when nothing was due, and always in a dry run.
    pub act_id: Option<i64>,
    pub rules: Vec<RuleReport>,
}

impl RunReport {
    /// Returns the number of records removed by all rules.
    pub fn total(&self) -> usize {
        self.rules.iter().map(|rule| rule.count).sum()
    }
}

/// The state of one run, shared by its batches.
struct Run<'a> {
    settings: &'a RetentionSettings,
    now: OffsetDateTime,
    actor: Actor,
    act_id: Option<i64>,
    /// The last subject id checked by [`Rule::Subjects`].
    subject_cursor: i64,
}

impl Run<'_> {
    fn cutoff(&self, days: u32) -> String {
        crate::clock::format(self.now - time::Duration::days(i64::from(days)))
    }

    fn reason(&self, rule: Rule) -> String {
        let s = self.settings;
        match rule {
            Rule::ScheduledErasure => format!(
                "the subject withdrew consent; erasure is due {} days after the withdrawal",
                s.withdrawal_erase_days
            ),
            Rule::SpecialCategoryLeads => format!(
                "leads with health data (a special category) stored more than {} days",
                s.special_category_days
            ),
            Rule::Leads => format!("leads stored more than {} days", s.lead_days),
            Rule::Drafts => format!("draft replies written more than {} days ago", s.draft_days),
            Rule::Journal => format!("journal rows older than {} days", s.journal_days),
            Rule::Subjects => {
                "subject identifiers with no lead, consent event or pending erasure left"
                    .to_string()
            }
        }
    }

    fn method(&self, rule: Rule) -> Method {
        match rule {
            Rule::ScheduledErasure | Rule::SpecialCategoryLeads | Rule::Leads => {
                method_of(self.settings.method)
            }
            Rule::Drafts | Rule::Journal => Method::Deleted,
            Rule::Subjects => Method::Anonymised,
        }
    }

    fn act(&mut self, conn: &Connection) -> Result<i64, StoreError> {
        if let Some(id) = self.act_id {
            return Ok(id);
        }
        let id = acts::open(
            conn,
            ActKind::Retention,
            &self.settings.operator_or_note(),
            &self.actor.describe(),
        )?;
        self.act_id = Some(id);
        Ok(id)
    }

    /// Runs one batch of `rule` inside a savepoint. Returns `None` when the rule has
    /// nothing more to do.
    fn batch(
        &mut self,
        conn: &Connection,
        rule: Rule,
    ) -> Result<Option<RuleReport>, ComplianceError> {
        conn.execute_batch("SAVEPOINT retention_batch")?;
        match self.batch_body(conn, rule) {
            Ok(outcome) => {
                conn.execute_batch("RELEASE retention_batch")?;
                Ok(outcome)
            }
            Err(error) => {
                // Undo the batch and end the savepoint; the error is what the caller sees.
                let _ = conn.execute_batch("ROLLBACK TO retention_batch; RELEASE retention_batch");
                Err(error)
            }
        }
    }

    fn batch_body(
        &mut self,
        conn: &Connection,
        rule: Rule,
    ) -> Result<Option<RuleReport>, ComplianceError> {
        let limit = self.settings.batch_size;
        let mut report = RuleReport {
            rule: rule.name(),
            category: rule.category(),
            reason: self.reason(rule),
            method: self.method(rule).as_str(),
            count: 0,
            lead_ids: Vec::new(),
            subject_ids: Vec::new(),
            record_ids: Vec::new(),
        };
        let mut categories: Vec<String> = Vec::new();
        match rule {
            Rule::ScheduledErasure => {
                let now = crate::clock::format(self.now);
                let due = subjects::due_erasures(conn, &now, limit)?;
                if due.is_empty() {
                    return Ok(None);
                }
                for request in due {
                    report.record_ids.push(request.request_id);
                    report.count += 1;
                    let subject = request
                        .value
                        .and_then(|value| Some((SubjectKind::parse(&request.kind)?, value)));
                    let Some((kind, value)) = subject else {
                        // Erased already by the subject's own request.
                        subjects::finish_erasures(conn, request.subject_id, None)?;
                        continue;
                    };
                    let subject = Subject { kind, value };
                    let act_id = self.act(conn)?;
                    let erased = erase_in(
                        conn,
                        &subject,
                        self.actor,
                        self.settings,
                        EraseRule::ConsentWithdrawn,
                        Some(act_id),
                    )?;
                    report.lead_ids.extend(erased.lead_ids);
                    report.subject_ids.extend(erased.subject_id);
                }
                // Each erasure wrote its own act item.
                return Ok(Some(report));
            }
            Rule::SpecialCategoryLeads | Rule::Leads => {
                let (scope, days) = if rule == Rule::Leads {
                    (LeadScope::All, self.settings.lead_days)
                } else {
                    (
                        LeadScope::SpecialCategory,
                        self.settings.special_category_days,
                    )
                };
                let ids = stored::due_leads(conn, scope, &self.cutoff(days), limit)?;
                if ids.is_empty() {
                    return Ok(None);
                }
                let anonymise = self.settings.method == LeadMethod::Anonymise;
                for id in ids {
                    let Some(removed) = stored::remove_lead(conn, id, anonymise)? else {
                        continue;
                    };
                    if let Some((kind, value)) = &removed.subject
                        && let Some(subject_id) = subjects::find(conn, kind, value)?
                        && !report.subject_ids.contains(&subject_id)
                    {
                        report.subject_ids.push(subject_id);
                    }
                    let mut entry = Entry::new(
                        if anonymise {
                            "retention_lead_anonymised"
                        } else {
                            "retention_lead_deleted"
                        },
                        self.actor,
                    );
                    entry.lead_id = Some(id);
                    entry.details = serde_json::json!({ "rule": rule.name() });
                    journal::append(conn, &entry)?;
                    for category in removed.data_categories {
                        if !categories.contains(&category) {
                            categories.push(category);
                        }
                    }
                    report.lead_ids.push(id);
                }
                report.count = report.lead_ids.len();
            }
            Rule::Drafts => {
                let due = stored::due_drafts(conn, &self.cutoff(self.settings.draft_days), limit)?;
                if due.is_empty() {
                    return Ok(None);
                }
                for (draft_id, lead_id) in due {
                    if stored::delete_draft(conn, draft_id)? {
                        let mut entry = Entry::new("retention_draft_deleted", self.actor);
                        entry.lead_id = Some(lead_id);
                        entry.personal_fields = &["draft.text"];
                        journal::append(conn, &entry)?;
                        report.record_ids.push(draft_id);
                        report.lead_ids.push(lead_id);
                    }
                }
                categories.push("draft".to_string());
                report.count = report.record_ids.len();
            }
            Rule::Journal => {
                let cutoff = self.cutoff(self.settings.journal_days);
                let ids = journal::ids_before(conn, &cutoff, limit)?;
                if ids.is_empty() {
                    return Ok(None);
                }
                report.count = journal::delete_before(conn, &cutoff, &ids)?;
                let mut entry = Entry::new("retention_journal_deleted", self.actor);
                entry.details = serde_json::json!({
                    "rows": report.count,
                    "first_id": ids.first(),
                    "last_id": ids.last(),
                });
                journal::append(conn, &entry)?;
                // Journal rows hold ids and field names, no personal data.
                report.record_ids = ids;
            }
            Rule::Subjects => {
                let batch = subjects::with_values(conn, self.subject_cursor, limit)?;
                let Some(last) = batch.last() else {
                    return Ok(None);
                };
                self.subject_cursor = last.id;
                for stored_subject in batch {
                    let Some(kind) = SubjectKind::parse(&stored_subject.kind) else {
                        continue;
                    };
                    let subject = Subject {
                        kind,
                        value: stored_subject.value,
                    };
                    let in_use = !super::requests::lead_ids_of(conn, &subject)?.is_empty()
                        || subjects::pending_erasures(conn, stored_subject.id)? > 0
                        || !subjects::consent_events(conn, kind.as_str(), &subject.value)?
                            .is_empty();
                    if in_use {
                        continue;
                    }
                    subjects::forget_value(conn, stored_subject.id)?;
                    report.subject_ids.push(stored_subject.id);
                    let category = format!("subject identifier ({})", kind.as_str());
                    if !categories.contains(&category) {
                        categories.push(category);
                    }
                }
                report.count = report.subject_ids.len();
            }
        }
        if report.count > 0 {
            let act_id = self.act(conn)?;
            acts::add_item(
                conn,
                act_id,
                &ActItem {
                    at: String::new(),
                    rule: report.rule.to_string(),
                    reason: report.reason.clone(),
                    category: report.category.to_string(),
                    data_categories: categories,
                    method: report.method.to_string(),
                    lead_ids: report.lead_ids.clone(),
                    subject_ids: report.subject_ids.clone(),
                    record_ids: report.record_ids.clone(),
                    count: report.count as i64,
                },
            )?;
        }
        Ok(Some(report))
    }
}

/// Adds a batch's outcome to the run's report, merging it into the rule's line.
fn merge(reports: &mut Vec<RuleReport>, batch: RuleReport) {
    match reports.iter_mut().find(|r| r.rule == batch.rule) {
        Some(existing) => {
            existing.count += batch.count;
            existing.lead_ids.extend(batch.lead_ids);
            existing.subject_ids.extend(batch.subject_ids);
            existing.record_ids.extend(batch.record_ids);
        }
        None => reports.push(batch),
    }
}

/// Runs every rule at time `now`. Each batch takes the store's lock on its own, so the
/// server goes on answering between batches. `progress` receives the rule name and the
/// records it has removed so far.
///
/// # Errors
/// The first store error; the batches before it stay committed and the act stays open.
pub fn run(
    store: &Store,
    settings: &RetentionSettings,
    now: OffsetDateTime,
    actor: Actor,
    dry_run: bool,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<RunReport, ComplianceError> {
    let mut run = Run {
        settings,
        now,
        actor,
        act_id: None,
        subject_cursor: 0,
    };
    let mut reports: Vec<RuleReport> = Vec::new();
    if dry_run {
        locked(store, |conn| {
            conn.execute_batch("BEGIN")?;
            let result = run_all(&mut run, conn, &mut reports, progress);
            conn.execute_batch("ROLLBACK")?;
            result
        })?;
        return Ok(RunReport {
            dry_run,
            now: crate::clock::format(now),
            act_id: None,
            rules: reports,
        });
    }
    run.act_id = store.call_blocking(|conn| acts::unfinished_retention(conn))?;
    for rule in RULES {
        loop {
            let outcome = locked(store, |conn| run.batch(conn, rule))?;
            let Some(batch) = outcome else { break };
            merge(&mut reports, batch);
            let done = reports.iter().find(|r| r.rule == rule.name());
            progress(rule.name(), done.map_or(0, |r| r.count));
        }
    }
    if let Some(act_id) = run.act_id {
        store.call_blocking(|conn| acts::complete(conn, act_id))?;
    }
    Ok(RunReport {
        dry_run,
        now: crate::clock::format(now),
        act_id: run.act_id,
        rules: reports,
    })
}

/// Runs `work` with the store's connection, keeping the compliance error type.
fn locked<R>(
    store: &Store,
    work: impl FnOnce(&mut Connection) -> Result<R, ComplianceError>,
) -> Result<R, ComplianceError> {
    let mut result = None;
    store.call_blocking(|conn| {
        result = Some(work(conn));
        Ok(())
    })?;
    result.expect("call_blocking runs the work before it returns Ok")
}

fn run_all(
    run: &mut Run<'_>,
    conn: &Connection,
    reports: &mut Vec<RuleReport>,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<(), ComplianceError> {
    for rule in RULES {
        while let Some(batch) = run.batch(conn, rule)? {
            merge(reports, batch);
            let done = reports.iter().find(|r| r.rule == rule.name());
            progress(rule.name(), done.map_or(0, |r| r.count));
        }
    }
    Ok(())
}

/// Runs the retention job now and then every `settings.run_every_minutes`, until the
/// process ends. Errors are logged and the next run tries again.
pub async fn run_periodically(store: Store, settings: RetentionSettings) {
    if settings.run_every_minutes == 0 {
        tracing::info!("the retention job inside serve is off (run_every_minutes = 0)");
        return;
    }
    let period = StdDuration::from_secs(settings.run_every_minutes.saturating_mul(60));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let store = store.clone();
        let settings = settings.clone();
        let started = std::time::Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            run(
                &store,
                &settings,
                crate::clock::now(),
                Actor::System,
                false,
                &mut |_, _| {},
            )
        })
        .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok(Ok(report)) => tracing::info!(
                removed = report.total(),
                act_id = report.act_id,
                elapsed_ms,
                "retention run finished"
            ),
            Ok(Err(error)) => tracing::error!(%error, elapsed_ms, "retention run failed"),
            Err(error) => tracing::error!(%error, "retention task panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::requests::schedule_withdrawal_erasure;
    use crate::store::queries::{NewLead, insert_lead};
    use crate::store::{Inserted, acts};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("retention.db")).unwrap();
        (dir, store)
    }

    fn plant(store: &Store, external_id: &str, text: &str) -> i64 {
        let redaction = crate::redact::redact(text);
        let lead = NewLead {
            channel: "telegram".into(),
            external_id: external_id.into(),
            redacted_text: redaction.text,
            name_placeholder: None,
            received_at: None,
            special_category: redaction.special_category,
            mapping: redaction.mapping,
            key_id: None,
        };
        match store.call_blocking(|c| insert_lead(c, &lead)).unwrap() {
            Inserted::Created(id) => id,
            Inserted::Existing(id) => panic!("lead {id} existed"),
        }
    }

    fn run_at(store: &Store, settings: &RetentionSettings, days: i64) -> RunReport {
        let now = crate::clock::now() + time::Duration::days(days);
        run(store, settings, now, Actor::Cli, false, &mut |_, _| {}).unwrap()
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store
            .call_blocking(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    }

    #[test]
    fn withdrawal_erasure_waits_for_due_date() {
        let (_dir, store) = store();
        let settings = RetentionSettings::default();
        let kept = plant(&store, "m-1", "Запишите на маникюр, тел. +7 917 000-00-02");
        let erased = plant(&store, "m-2", "Запишите на стрижку, тел. +7 917 000-00-01");
        let scheduled = store
            .call_blocking(|c| {
                Ok(schedule_withdrawal_erasure(
                    c,
                    "phone",
                    "+79170000001",
                    crate::clock::now(),
                    &settings,
                ))
            })
            .unwrap()
            .unwrap()
            .expect("a phone subject is scheduled");

        let early = run_at(&store, &settings, 29);
        assert_eq!(early.total(), 0, "an erasure ran before its due date");

        let due = run_at(&store, &settings, 31);
        let rule = due
            .rules
            .iter()
            .find(|r| r.rule == "consent_withdrawn")
            .expect("the scheduled erasure ran");
        assert_eq!(rule.lead_ids, vec![erased]);
        assert_eq!(rule.subject_ids, vec![scheduled.subject_id]);
        assert_eq!(count(&store, "SELECT count(*) FROM leads"), 1);
        let left: i64 = count(&store, "SELECT id FROM leads");
        assert_eq!(left, kept);
        let pending = count(
            &store,
            "SELECT count(*) FROM erasure_requests WHERE done_at IS NULL",
        );
        assert_eq!(pending, 0);
        let act = store
            .call_blocking(|c| acts::load(c, due.act_id.expect("an act")))
            .unwrap()
            .unwrap();
        assert!(act.completed_at.is_some());
        assert_eq!(act.items[0].rule, "consent_withdrawn");
        assert!(
            act.items[0].data_categories.contains(&"PHONE".to_string()),
            "{:?}",
            act.items[0].data_categories
        );
        let act_json = serde_json::to_string(&act).unwrap();
        assert!(!act_json.contains("917"), "the act holds the phone number");
    }

    #[test]
    fn anonymise_keeps_statistics_only() {
        let (_dir, store) = store();
        let settings = RetentionSettings {
            method: LeadMethod::Anonymise,
            ..RetentionSettings::default()
        };
        let id = plant(
            &store,
            "wamid-79170000001",
            "Меня зовут Гульнара, +7 917 000-00-01",
        );
        let report = run_at(&store, &settings, 366);
        let rule = report
            .rules
            .iter()
            .find(|r| r.rule == "leads_term")
            .unwrap();
        assert_eq!(rule.lead_ids, vec![id]);
        assert_eq!(rule.method, "anonymised");
        assert_eq!(count(&store, "SELECT count(*) FROM leads"), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM redaction_mappings"), 0);
        let text: String = store
            .call_blocking(|c| {
                Ok(
                    c.query_row("SELECT redacted_text || external_id FROM leads", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .unwrap();
        assert_eq!(text, format!("anonymised-{id}"));
        let again = run_at(&store, &settings, 366);
        assert_eq!(again.total(), 0, "an anonymised lead was removed twice");
    }

    #[test]
    fn stopped_run_act_is_continued() {
        let (_dir, store) = store();
        let settings = RetentionSettings::default();
        plant(&store, "m-1", "Сколько стоит маникюр?");
        let open = store
            .call_blocking(|c| acts::open(c, ActKind::Retention, "x", "retention job"))
            .unwrap();
        let report = run_at(&store, &settings, 400);
        assert_eq!(report.act_id, Some(open));
        let act = store
            .call_blocking(|c| acts::load(c, open))
            .unwrap()
            .unwrap();
        assert!(act.completed_at.is_some());
        assert!(!act.items.is_empty());
    }

    #[test]
    fn dry_run_changes_nothing() {
        let (_dir, store) = store();
        let settings = RetentionSettings::default();
        let id = plant(&store, "m-1", "Сколько стоит маникюр?");
        let now = crate::clock::now() + time::Duration::days(400);
        let report = run(&store, &settings, now, Actor::Cli, true, &mut |_, _| {}).unwrap();
        let rule = report
            .rules
            .iter()
            .find(|r| r.rule == "leads_term")
            .unwrap();
        assert_eq!(rule.lead_ids, vec![id]);
        assert_eq!(report.act_id, None);
        assert_eq!(count(&store, "SELECT count(*) FROM leads"), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM destruction_acts"), 0);
    }
}
