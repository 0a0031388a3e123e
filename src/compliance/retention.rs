//! The retention job: removes what is past its term, in batches, and records each batch in
//! a destruction act and the journal.
//!
//! Each batch runs in its own transaction (a savepoint), so a crash loses at most the batch
//! in progress and the next run continues, adding to the act the stopped run left open. A
//! dry run does the same work inside one transaction that it rolls back, so its report
//! matches what a real run at the same time would do.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use rusqlite::Connection;
use serde::Serialize;
use time::OffsetDateTime;

use super::requests::{EraseRule, erase_in, method_of};
use super::{ComplianceError, with_store};
use crate::config::{LeadMethod, RetentionSettings, Settings};
use crate::consent::{Subject, SubjectKind};
use crate::store::acts::{self, ActItem, ActKind, Method};
use crate::store::consent::subject_events;
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
    ConsentLog,
    Subjects,
}

const RULES: [Rule; 7] = [
    Rule::ScheduledErasure,
    Rule::SpecialCategoryLeads,
    Rule::Leads,
    Rule::Drafts,
    Rule::Journal,
    Rule::ConsentLog,
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
            Rule::ConsentLog => "consent_log_term",
            Rule::Subjects => "unused_subject_identifiers",
        }
    }

    fn category(self) -> &'static str {
        match self {
            Rule::ScheduledErasure | Rule::SpecialCategoryLeads | Rule::Leads => "leads",
            Rule::Drafts => "drafts",
            Rule::Journal => "journal",
            Rule::ConsentLog => "consent_log",
            Rule::Subjects => "subjects",
        }
    }
}

/// The records one rule removed, or would remove in a dry run.
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
    settings: &'a Settings,
    now: OffsetDateTime,
    actor: Actor,
    act_id: Option<i64>,
    /// The last subject id checked by [`Rule::Subjects`].
    subject_cursor: i64,
}

impl Run<'_> {
    fn terms(&self) -> &RetentionSettings {
        &self.settings.retention
    }

    fn cutoff(&self, days: u32) -> String {
        crate::clock::format(self.now - time::Duration::days(i64::from(days)))
    }

    fn reason(&self, rule: Rule) -> String {
        let s = self.terms();
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
            Rule::ConsentLog => format!(
                "consent events of a subject who withdrew consent more than {} days ago",
                s.consent_log_days
            ),
            Rule::Subjects => {
                "subject identifiers with no lead, consent event or pending erasure left"
                    .to_string()
            }
        }
    }

    fn method(&self, rule: Rule) -> Method {
        match rule {
            Rule::ScheduledErasure | Rule::SpecialCategoryLeads | Rule::Leads => {
                method_of(self.terms().method)
            }
            Rule::Drafts | Rule::Journal | Rule::ConsentLog => Method::Deleted,
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
            &self.settings.operator.name,
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
                // Undo the batch and end the savepoint, then return the batch's error.
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
        let mut batch = Batch {
            report: RuleReport {
                rule: rule.name(),
                category: rule.category(),
                reason: self.reason(rule),
                method: self.method(rule).as_str(),
                count: 0,
                lead_ids: Vec::new(),
                subject_ids: Vec::new(),
                record_ids: Vec::new(),
            },
            data_categories: Vec::new(),
        };
        let found = match rule {
            // Each erasure writes its own act item, so this rule returns early.
            Rule::ScheduledErasure => return self.scheduled_erasures(conn, batch),
            Rule::SpecialCategoryLeads => {
                let days = self.terms().special_category_days;
                self.leads(conn, rule, LeadScope::SpecialCategory, days, &mut batch)?
            }
            Rule::Leads => self.leads(
                conn,
                rule,
                LeadScope::All,
                self.terms().lead_days,
                &mut batch,
            )?,
            Rule::Drafts => self.drafts(conn, &mut batch)?,
            Rule::Journal => self.journal_rows(conn, &mut batch)?,
            Rule::ConsentLog => self.consent_events(conn, &mut batch)?,
            Rule::Subjects => self.unused_subjects(conn, &mut batch)?,
        };
        if !found {
            return Ok(None);
        }
        let report = batch.report;
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
                    data_categories: batch.data_categories,
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

    fn scheduled_erasures(
        &mut self,
        conn: &Connection,
        mut batch: Batch,
    ) -> Result<Option<RuleReport>, ComplianceError> {
        let now = crate::clock::format(self.now);
        let due = subjects::due_erasures(conn, &now, self.terms().batch_size)?;
        if due.is_empty() {
            return Ok(None);
        }
        let report = &mut batch.report;
        for request in due {
            report.record_ids.push(request.request_id);
            report.count += 1;
            let subject = request
                .value
                .clone()
                .and_then(|value| Some((SubjectKind::parse(&request.kind)?, value)));
            let Some((kind, value)) = subject else {
                // The subject's own erase request came first.
                subjects::finish_erasures(conn, request.subject_id, None)?;
                continue;
            };
            let act_id = self.act(conn)?;
            let erased = erase_in(
                conn,
                &Subject { kind, value },
                self.actor,
                self.settings,
                EraseRule::ConsentWithdrawn,
                Some(act_id),
                Some(&request.data_before),
            )?;
            report.lead_ids.extend(erased.lead_ids);
            report.subject_ids.extend(erased.subject_id);
        }
        Ok(Some(batch.report))
    }

    /// Removes one batch of leads of `scope` stored more than `days` ago. Returns false
    /// when none is due.
    fn leads(
        &mut self,
        conn: &Connection,
        rule: Rule,
        scope: LeadScope,
        days: u32,
        batch: &mut Batch,
    ) -> Result<bool, ComplianceError> {
        let limit = self.terms().batch_size;
        let ids = stored::due_leads(conn, scope, &self.cutoff(days), limit)?;
        if ids.is_empty() {
            return Ok(false);
        }
        let anonymise = self.terms().method == LeadMethod::Anonymise;
        let action = if anonymise {
            "retention_lead_anonymised"
        } else {
            "retention_lead_deleted"
        };
        for id in ids {
            let Some(removed) = stored::remove_lead(conn, id, anonymise)? else {
                continue;
            };
            if let Some((kind, value)) = &removed.subject
                && let Some(subject_id) = subjects::find(conn, kind, value)?
            {
                batch.add_subject(subject_id);
            }
            let mut entry = Entry::new(action, self.actor);
            entry.lead_id = Some(id);
            entry.details = serde_json::json!({ "rule": rule.name() });
            journal::append(conn, &entry)?;
            for category in removed.data_categories {
                batch.add_category(category);
            }
            batch.report.lead_ids.push(id);
        }
        batch.report.count = batch.report.lead_ids.len();
        Ok(true)
    }

    fn drafts(&mut self, conn: &Connection, batch: &mut Batch) -> Result<bool, ComplianceError> {
        let cutoff = self.cutoff(self.terms().draft_days);
        let due = stored::due_drafts(conn, &cutoff, self.terms().batch_size)?;
        if due.is_empty() {
            return Ok(false);
        }
        for (draft_id, lead_id) in due {
            if stored::delete_draft(conn, draft_id)? {
                let mut entry = Entry::new("retention_draft_deleted", self.actor);
                entry.lead_id = Some(lead_id);
                entry.personal_fields = &["draft.text"];
                journal::append(conn, &entry)?;
                batch.report.record_ids.push(draft_id);
                batch.report.lead_ids.push(lead_id);
            }
        }
        batch.add_category("draft".to_string());
        batch.report.count = batch.report.record_ids.len();
        Ok(true)
    }

    fn journal_rows(
        &mut self,
        conn: &Connection,
        batch: &mut Batch,
    ) -> Result<bool, ComplianceError> {
        let cutoff = self.cutoff(self.terms().journal_days);
        let ids = journal::ids_before(conn, &cutoff, self.terms().batch_size)?;
        if ids.is_empty() {
            return Ok(false);
        }
        batch.report.count = journal::delete_before(conn, &cutoff, &ids)?;
        let mut entry = Entry::new("retention_journal_deleted", self.actor);
        entry.details = serde_json::json!({
            "rows": batch.report.count,
            "first_id": ids.first(),
            "last_id": ids.last(),
        });
        journal::append(conn, &entry)?;
        // Journal rows contain ids and field names and no personal data, so the batch
        // lists no data category.
        batch.report.record_ids = ids;
        Ok(true)
    }

    fn consent_events(
        &mut self,
        conn: &Connection,
        batch: &mut Batch,
    ) -> Result<bool, ComplianceError> {
        let cutoff = self.cutoff(self.terms().consent_log_days);
        let ids = stored::due_consent_events(conn, &cutoff, self.terms().batch_size)?;
        if ids.is_empty() {
            return Ok(false);
        }
        for (kind, value) in stored::delete_consent_events(conn, &cutoff, &ids)? {
            if let Some(id) = subjects::find(conn, &kind, &value)? {
                batch.add_subject(id);
            }
        }
        let mut entry = Entry::new("retention_consent_events_deleted", self.actor);
        entry.details = serde_json::json!({
            "events": ids,
            "subjects": batch.report.subject_ids,
        });
        entry.personal_fields = &["consent_log.subject", "consent_log.evidence"];
        journal::append(conn, &entry)?;
        batch.report.count = ids.len();
        batch.report.record_ids = ids;
        batch.add_category("consent events (subject identifier, message id, times)".to_string());
        Ok(true)
    }

    /// Forgets the values of subjects that nothing refers to any more, one page of
    /// subjects per batch.
    fn unused_subjects(
        &mut self,
        conn: &Connection,
        batch: &mut Batch,
    ) -> Result<bool, ComplianceError> {
        let page = subjects::with_values(conn, self.subject_cursor, self.terms().batch_size)?;
        let Some(last) = page.last() else {
            return Ok(false);
        };
        self.subject_cursor = last.id;
        for stored_subject in page {
            let Some(kind) = SubjectKind::parse(&stored_subject.kind) else {
                continue;
            };
            let subject = Subject {
                kind,
                value: stored_subject.value,
            };
            let in_use = !super::requests::lead_ids_of(conn, &subject)?.is_empty()
                || subjects::pending_erasures(conn, stored_subject.id)? > 0
                || !subject_events(conn, kind.as_str(), &subject.value)?.is_empty();
            if in_use {
                continue;
            }
            subjects::forget_value(conn, stored_subject.id)?;
            batch.report.subject_ids.push(stored_subject.id);
            batch.add_category(format!("subject identifier ({})", kind.as_str()));
        }
        batch.report.count = batch.report.subject_ids.len();
        Ok(true)
    }
}

/// One batch in progress: its report and the categories of personal data it removed.
struct Batch {
    report: RuleReport,
    data_categories: Vec<String>,
}

impl Batch {
    fn add_category(&mut self, category: String) {
        if !self.data_categories.contains(&category) {
            self.data_categories.push(category);
        }
    }

    fn add_subject(&mut self, id: i64) {
        if !self.report.subject_ids.contains(&id) {
            self.report.subject_ids.push(id);
        }
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

/// Runs every rule of `settings.retention` at time `now`; acts name `settings.operator`.
/// Each batch takes the store's lock on its own, so the server goes on serving requests
/// between batches. `progress` receives the rule name and the records it has removed so far.
///
/// # Errors
/// The first store error; the batches before it stay committed and the act stays open.
pub fn run(
    store: &Store,
    settings: &Settings,
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
        with_store(store, |conn| {
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
            let outcome = with_store(store, |conn| run.batch(conn, rule))?;
            let Some(batch) = outcome else { break };
            merge(&mut reports, batch);
            let done = reports.iter().find(|r| r.rule == rule.name());
            progress(rule.name(), done.map_or(0, |r| r.count));
        }
    }
    if let Some(act_id) = run.act_id {
        store.call_blocking(|conn| acts::complete(conn, act_id))?;
        store.call_blocking(|conn| {
            crate::store::key::checkpoint_after_erase(conn);
            Ok::<_, crate::store::StoreError>(())
        })?;
    }
    Ok(RunReport {
        dry_run,
        now: crate::clock::format(now),
        act_id: run.act_id,
        rules: reports,
    })
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

/// Runs the retention job now and then every `retention.run_every_minutes`, until the
/// process ends. Errors are logged and the next run tries again.
pub async fn run_periodically(store: Store, settings: Arc<Settings>) {
    let run_every_minutes = settings.retention.run_every_minutes;
    if run_every_minutes == 0 {
        tracing::info!("the retention job inside serve is off (run_every_minutes = 0)");
        return;
    }
    let period = StdDuration::from_secs(run_every_minutes.saturating_mul(60));
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
        crate::store::temporary_store()
    }

    /// Returns the default settings with `method` for leads.
    fn settings(method: LeadMethod) -> Settings {
        let mut settings = Settings::defaults();
        settings.retention.method = method;
        settings
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
            subject: None,
        };
        match store
            .call_blocking(|c| insert_lead(c, &lead, None))
            .unwrap()
        {
            Inserted::Created(id) => id,
            other => panic!("lead {external_id} was not created: {other:?}"),
        }
    }

    fn run_at(store: &Store, settings: &Settings, days: i64) -> RunReport {
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
        let settings = settings(LeadMethod::Delete);
        let kept = plant(&store, "m-1", "Запишите на маникюр, тел. +7 917 000-00-02");
        let erased = plant(&store, "m-2", "Запишите на стрижку, тел. +7 917 000-00-01");
        // A client who withdrew a minute before writing again keeps the new lead.
        let later = plant(
            &store,
            "m-3",
            "Снова хочу записаться, тел. +7 917 000-00-03",
        );
        let schedule = |phone: &str, withdrawn_at| {
            store
                .call_blocking(|c| {
                    schedule_withdrawal_erasure(
                        c,
                        "phone",
                        phone,
                        withdrawn_at,
                        &settings.retention,
                    )
                })
                .unwrap()
                .expect("a phone subject is scheduled")
        };
        let minute = time::Duration::minutes(1);
        let scheduled = schedule("+79170000001", crate::clock::now() + minute);
        schedule("+79170000003", crate::clock::now() - minute);

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
        let left: Vec<i64> = store
            .call_blocking(|c| {
                let mut statement = c.prepare("SELECT id FROM leads ORDER BY id")?;
                let ids: rusqlite::Result<Vec<i64>> =
                    statement.query_map([], |r| r.get(0))?.collect();
                Ok(ids?)
            })
            .unwrap();
        assert_eq!(left, vec![kept, later]);
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
        let settings = settings(LeadMethod::Anonymise);
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
        let settings = settings(LeadMethod::Delete);
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

    /// Appends a consent event `days` after now, with placeholder hashes: the chain is not
    /// checked here.
    fn consent_event(store: &Store, phone: &str, event: &str, days: i64) {
        let at = crate::clock::format(crate::clock::now() + time::Duration::days(days));
        store
            .call_blocking(|c| {
                c.execute(
                    "INSERT OR IGNORE INTO consent_texts (purpose, version, operator, categories, \
                     operations, term, withdrawal, policy_url, body, active, created_at) \
                     VALUES ('lead_processing', 1, 'o', '[]', '[]', 't', 'w', 'https://x', 'b', 1, ?1)",
                    [&at],
                )?;
                c.execute(
                    "INSERT INTO consent_log (subject_kind, subject, event, purpose, text_version, \
                     channel, evidence, at, recorded_at, prev_sha256, sha256) \
                     VALUES ('phone', ?1, ?2, 'lead_processing', 1, 'telegram', 'm', ?3, ?3, 'p', 's')",
                    rusqlite::params![phone, event, at],
                )?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn consent_log_kept_until_term_after_withdrawal() {
        let (_dir, store) = store();
        let settings = settings(LeadMethod::Delete);
        // Withdrawn on day 0: due after day 1095.
        consent_event(&store, "+79170000001", "granted", -10);
        consent_event(&store, "+79170000001", "withdrawn", 0);
        // Withdrawn, then granted again: kept, because the latest event is a grant.
        consent_event(&store, "+79170000002", "withdrawn", -5);
        consent_event(&store, "+79170000002", "granted", 0);
        // Withdrawn later: not due yet.
        consent_event(&store, "+79170000003", "withdrawn", 100);

        let delete =
            store.call_blocking(|c| Ok(c.execute("DELETE FROM consent_log WHERE id = 1", [])?));
        assert!(
            delete.is_err(),
            "a consent event was deleted outside the retention job"
        );
        assert_eq!(run_at(&store, &settings, 1094).total(), 0);

        let report = run_at(&store, &settings, 1096);
        let rule = report
            .rules
            .iter()
            .find(|r| r.rule == "consent_log_term")
            .expect("the consent log rule ran");
        assert_eq!(rule.record_ids, vec![1, 2]);
        let left = count(&store, "SELECT count(*) FROM consent_log");
        assert_eq!(left, 3);
        let pruned = count(&store, "SELECT count(*) FROM consent_log_pruned");
        assert_eq!(pruned, 2);
        let gone = count(
            &store,
            "SELECT count(*) FROM consent_log WHERE subject = '+79170000001'",
        );
        assert_eq!(gone, 0);
    }

    #[test]
    fn dry_run_changes_nothing() {
        let (_dir, store) = store();
        let settings = settings(LeadMethod::Delete);
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
