//! The path of one lead: accept (redact, check consent, store), qualify, draft, store the
//! result.
//!
//! This is the only module that ties the redactor, the engine and the store together. The
//! engine sees only the redacted text of leads whose subject has a valid consent; the
//! original values stay in the store's mapping and are filled back only into the draft
//! shown to the bot and staff.

mod gate;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, oneshot};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::config::Settings;
use crate::consent::InvalidSubject;
use crate::draft;
use crate::engine::{Engine, EngineError, Generation};
use crate::qualify::{PROMPT_VERSION, Qualifier};
use crate::redact::{KnownValue, PiiKind, Redaction, redact_with_known, restore_draft};
use crate::store::consent::ConsentText;
use crate::store::{
    self, DraftRow, Inserted, LeadRecord, LeadWork, NewLead, QualificationRow, Store,
};

pub use gate::{ConsentGate, GivenConsent};

/// How long a lead that found the engine queue full waits before it tries again.
const OVERLOADED_RETRY: Duration = Duration::from_millis(250);

/// A lead whose fields the HTTP layer or the command line has validated.
pub struct ValidLead {
    pub channel: String,
    pub external_id: String,
    pub text: String,
    pub contact: Contact,
    pub received_at: Option<String>,
    /// The API key that sent the lead; `None` for the command line.
    pub key_id: Option<i64>,
    pub consent: ConsentGate,
}

impl ValidLead {
    /// Redacts the text and gives each contact field a placeholder, shared with the same
    /// value in the text. Returns the redaction and the contact name's placeholder, if a
    /// name was given.
    pub fn redact(&self) -> (Redaction, Option<String>) {
        let contact = &self.contact;
        let known = [
            (PiiKind::Person, &contact.name),
            (PiiKind::Phone, &contact.phone),
            (PiiKind::Email, &contact.email),
            (PiiKind::Handle, &contact.handle),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.clone().map(|value| KnownValue { kind, value }))
        .collect::<Vec<_>>();
        let name_given = known.first().is_some_and(|k| k.kind == PiiKind::Person);
        let (redaction, placeholders) = redact_with_known(&self.text, &known);
        let name_placeholder = if name_given {
            placeholders.first().cloned().flatten()
        } else {
            None
        };
        (redaction, name_placeholder)
    }
}

/// Contact fields sent beside the text; each is personal data.
#[derive(Default)]
pub struct Contact {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub handle: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] store::StoreError),

    #[error("the model engine has stopped")]
    EngineStopped,

    #[error(transparent)]
    Draft(#[from] draft::DraftError),

    #[error("lead {id} is not stored")]
    UnknownLead { id: i64 },

    /// A contact field that should name the lead's subject cannot be normalised.
    #[error(transparent)]
    InvalidContact(#[from] InvalidSubject),
}

/// The result of [`Pipeline::accept_and_start`].
pub enum Accepted {
    /// The same (channel, external_id) was stored before, under this id.
    Existing(i64),
    /// Stored redacted, without its mapping: the subject has no valid consent.
    ConsentRequired(i64),
    /// Another API key already sent a lead with this (channel, external_id).
    OtherKey,
    /// Stored now (or stored again after a consent); the receiver reports the first
    /// progress of its processing.
    Started(i64, oneshot::Receiver<Progress>),
}

/// The outcome of a processing attempt, reported to the request that started it.
pub enum Progress {
    /// The engine queue was full; the lead keeps trying in the background.
    Queued,
    Finished(Result<(), String>),
}

/// Timings of one qualification in milliseconds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimingsView {
    pub queue_ms: f64,
    pub prompt_ms: f64,
    pub generate_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QualificationView {
    pub service: String,
    pub intent: String,
    pub urgency: String,
    pub temperature: String,
    pub language: String,
    pub missing_fields: Vec<String>,
    /// One line in placeholder form, such as "[PERSON_1] просит запись".
    pub summary: String,
    /// 0 to 100; see the scoring rule in `qualify::rules::score`.
    pub score: u8,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DraftView {
    /// The reply with the client's real values filled in.
    pub text: String,
    pub template_kind: String,
    pub template_version: i64,
    /// Set when the template version used is the one for this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_service: Option<String>,
}

impl QualificationView {
    pub fn from_row(q: QualificationRow) -> QualificationView {
        QualificationView {
            service: q.service,
            intent: q.intent,
            urgency: q.urgency,
            temperature: q.temperature,
            language: q.language,
            missing_fields: q.missing_fields,
            summary: q.summary,
            score: q.score,
        }
    }
}

/// A lead as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeadView {
    pub lead_id: i64,
    /// The API key that sent the lead, for the check that a bot reads only its own leads.
    #[serde(skip)]
    pub key_id: Option<i64>,
    /// processing, pending_review, spam, consent_required or failed.
    pub status: String,
    /// The active consent text, when the status is consent_required: the bot shows it to
    /// the client and sends the answer as `consent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_text: Option<ConsentText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualification: Option<QualificationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<DraftView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<TimingsView>,
}

impl LeadView {
    fn from_record(record: LeadRecord) -> LeadView {
        let status = match record.status.as_str() {
            // Accepted but not finished: the model is on it or it waits its turn.
            "received" => "processing".to_string(),
            other => other.to_string(),
        };
        let timings = record.qualification.as_ref().map(|q| TimingsView {
            queue_ms: q.queue_ms,
            prompt_ms: q.prompt_ms,
            generate_ms: q.generate_ms,
            total_ms: q.total_ms,
        });
        LeadView {
            lead_id: record.id,
            key_id: record.key_id,
            status,
            consent_text: None,
            qualification: record.qualification.map(QualificationView::from_row),
            draft: record.draft.map(|d| DraftView {
                text: restore_draft(&record.mapping, &d.text),
                template_kind: d.template_kind,
                template_version: d.template_version,
                template_service: d.template_service,
            }),
            timings,
        }
    }
}

/// Counts background lead tasks so that shutdown can wait for them.
#[derive(Default)]
struct TaskCounter {
    running: AtomicUsize,
    idle: Notify,
}

struct TaskGuard(Arc<TaskCounter>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Everything one lead needs; clones share the engine, store and settings.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Arc<Settings>,
    pub engine: Engine,
    pub store: Store,
    qualifier: Arc<Qualifier>,
    model_sha256: Arc<str>,
    tasks: Arc<TaskCounter>,
}

impl Pipeline {
    /// Builds the pipeline and loads the shipped templates and consent text into the store
    /// when it has none.
    ///
    /// # Errors
    /// When the prompt or the consent text does not render, or the store fails.
    pub fn new(
        settings: Arc<Settings>,
        engine: Engine,
        store: Store,
        model_sha256: String,
    ) -> anyhow::Result<Pipeline> {
        let qualifier = Arc::new(Qualifier::new(&settings)?);
        let shipped = draft::shipped_templates();
        let seeded = store.call_blocking(|conn| store::queries::seed_templates(conn, &shipped))?;
        if seeded > 0 {
            tracing::info!(templates = seeded, "loaded the shipped reply templates");
        }
        let consent_text = crate::consent::shipped_text(&settings.operator)?;
        if store.call_blocking(|conn| store::consent::seed_text(conn, &consent_text))? {
            tracing::info!(
                purpose = %consent_text.purpose,
                "loaded the shipped consent text as version 1"
            );
        }
        if settings.operator.is_example {
            tracing::warn!(
                "the [operator] settings are the shipped examples; the consent text names a \
                 made-up operator until you set your own and remove `is_example`"
            );
        }
        Ok(Pipeline {
            settings,
            engine,
            store,
            qualifier,
            model_sha256: model_sha256.into(),
            tasks: Arc::default(),
        })
    }

    /// Redacts a lead and stores it, or finds the lead stored under the same
    /// (channel, external_id).
    pub async fn accept(&self, lead: ValidLead) -> Result<Inserted, PipelineError> {
        let (redaction, name_placeholder) = lead.redact();
        let gate = match lead.consent {
            ConsentGate::NotChecked => None,
            checked => {
                let subject = gate::lead_subject(
                    &lead.contact,
                    &redaction.spans,
                    &lead.channel,
                    &lead.external_id,
                )?;
                let store_gate = gate::lead_gate(
                    checked,
                    &subject,
                    &lead.channel,
                    &lead.external_id,
                    lead.received_at.as_deref(),
                    lead.key_id,
                    self.withdrawal_hook(),
                );
                Some((subject, store_gate))
            }
        };
        let new_lead = NewLead {
            channel: lead.channel,
            external_id: lead.external_id,
            redacted_text: redaction.text,
            name_placeholder,
            received_at: lead.received_at,
            special_category: redaction.special_category,
            mapping: redaction.mapping,
            key_id: lead.key_id,
            subject: gate
                .as_ref()
                .map(|(subject, _)| (subject.kind.as_str().to_string(), subject.value.clone())),
        };
        let store_gate = gate.and_then(|(_, store_gate)| store_gate);
        let inserted = self
            .store
            .call(move |conn| store::queries::insert_lead(conn, &new_lead, store_gate.as_ref()))
            .await?;
        Ok(inserted)
    }

    /// Stores a lead and, when it is new, starts processing it. Both run in a task of
    /// their own: a client that disconnects drops the request's future, and that must not
    /// leave a stored lead unprocessed until the next start.
    pub async fn accept_and_start(&self, lead: ValidLead) -> Result<Accepted, PipelineError> {
        let pipeline = self.clone();
        tokio::spawn(async move {
            match pipeline.accept(lead).await? {
                Inserted::Existing(id) => Ok(Accepted::Existing(id)),
                Inserted::ConsentRequired(id) => Ok(Accepted::ConsentRequired(id)),
                Inserted::OtherKey => Ok(Accepted::OtherKey),
                Inserted::Created(id) | Inserted::Reopened(id) => {
                    Ok(Accepted::Started(id, pipeline.spawn_process(id)))
                }
            }
        })
        .await
        .map_err(|_| PipelineError::Store(store::StoreError::TaskFailed))?
    }

    /// Returns the current state of lead `id`, or `None` when it is unknown.
    pub async fn view(&self, id: i64) -> Result<Option<LeadView>, PipelineError> {
        let record = self
            .store
            .call(move |conn| store::queries::load_lead(conn, id))
            .await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let mut view = LeadView::from_record(record);
        if view.status == "consent_required" {
            view.consent_text = self
                .store
                .call(|conn| store::consent::active_text(conn, crate::consent::LEAD_PROCESSING))
                .await?;
        }
        Ok(Some(view))
    }

    /// Starts processing lead `id` in a background task and returns a receiver that
    /// reports the first of: the queue was full, or processing finished.
    pub fn spawn_process(&self, id: i64) -> oneshot::Receiver<Progress> {
        let (report, progress) = oneshot::channel();
        self.tasks.running.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(self.tasks.clone());
        let pipeline = self.clone();
        let span = tracing::info_span!("lead", lead_id = id);
        let task = async move {
            let _guard = guard;
            let mut report = Some(report);
            let result = pipeline.process(id, &mut report).await;
            if let Err(error) = &result {
                tracing::error!(lead_id = id, %error, "processing the lead failed");
                let reason = error.to_string();
                let _ = pipeline
                    .store
                    .call(move |conn| store::queries::fail_lead(conn, id, &reason))
                    .await;
            }
            if let Some(report) = report {
                let _ = report.send(Progress::Finished(result.map_err(|e| e.to_string())));
            }
        };
        tokio::spawn(task.instrument(span));
        progress
    }

    /// Waits until no background lead task runs.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.tasks.idle.notified();
            if self.tasks.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Queues a one-token generation with the shared system prompt, so that its keys and
    /// values are in the prefix cache before the first lead arrives.
    pub fn warm_up(&self) {
        let mut request = self.qualifier.request("");
        request.max_tokens = 1;
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match engine.generate(request).await {
                Ok(generation) => tracing::info!(
                    prompt_tokens = generation.timings.prompt_tokens,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "the system prompt is cached"
                ),
                Err(error) => tracing::warn!(%error, "warming the prompt cache failed"),
            }
        });
    }

    /// Resumes leads a previous run accepted but did not finish; returns how many.
    pub async fn resume_unfinished(&self) -> Result<usize, PipelineError> {
        let ids = self
            .store
            .call(|conn| store::queries::unfinished_leads(conn))
            .await?;
        for id in &ids {
            drop(self.spawn_process(*id));
        }
        Ok(ids.len())
    }

    /// Runs the model on a lead's redacted text. Returns `Ok(None)` when the lead stopped
    /// waiting (its subject withdrew consent) and `Ok(Some(None))` when the model failed,
    /// so that the rules alone qualify the lead.
    async fn generate(
        &self,
        work: &LeadWork,
        report: &mut Option<oneshot::Sender<Progress>>,
    ) -> Result<Option<Option<Generation>>, PipelineError> {
        let stopped = self.stopped(work.id, work.subject.is_some());
        tokio::pin!(stopped);
        let redacted = work.redacted_text.as_str();
        // TODO: the engine takes any String; a type that only `redact` can build would
        // make sending unredacted text to the model a compile error.
        let request = self.qualifier.request(redacted);
        let prompt_sha = hex::encode(Sha256::digest(redacted.as_bytes()));
        tracing::debug!(prompt_sha256 = %prompt_sha, bytes = redacted.len(), "queueing the prompt");
        tracing::trace!(target: "leadgate::prompt", prompt = redacted, "redacted user message");
        loop {
            // Dropping the engine's future cancels the request unless the model started it.
            let result = tokio::select! {
                result = self.engine.generate(request.clone()) => result,
                () = &mut stopped => return Ok(None),
            };
            match result {
                Ok(generation) => return Ok(Some(Some(generation))),
                Err(EngineError::Overloaded { .. }) => {
                    if let Some(report) = report.take() {
                        let _ = report.send(Progress::Queued);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(OVERLOADED_RETRY) => {}
                        () = &mut stopped => return Ok(None),
                    }
                }
                Err(EngineError::Stopped) => return Err(PipelineError::EngineStopped),
                Err(error) => {
                    // The rules still qualify the lead; the model's fields count as unknown.
                    tracing::warn!(%error, "the model failed on a lead; qualifying by rules only");
                    return Ok(Some(None));
                }
            }
        }
    }

    async fn process(
        &self,
        id: i64,
        report: &mut Option<oneshot::Sender<Progress>>,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let work = self
            .store
            .call(move |conn| store::queries::load_work(conn, id))
            .await?
            .ok_or(PipelineError::UnknownLead { id })?;
        if work.status != "received" {
            return Ok(());
        }
        if !self.subject_consented(&work.subject).await? {
            self.store
                .call(move |conn| store::queries::block_lead(conn, id))
                .await?;
            tracing::info!(
                lead_id = id,
                "the subject has no valid consent; lead not processed"
            );
            return Ok(());
        }
        let Some(generation) = self.generate(&work, report).await? else {
            tracing::info!(
                lead_id = id,
                "consent withdrawn while the lead waited; not processed"
            );
            return Ok(());
        };
        let name_known = work.name_placeholder.is_some();
        let qualification =
            self.qualifier
                .interpret(&work.redacted_text, name_known, generation.as_ref());
        let templates = self
            .store
            .call(|conn| store::queries::active_templates(conn))
            .await?;
        let service = self
            .settings
            .service(&qualification.service)
            .or_else(|| self.settings.service("other"))
            .expect("the settings check guarantees an `other` service");
        let draft = draft::compose(
            &templates,
            &qualification.intent,
            service,
            work.name_placeholder.as_deref(),
            &work.redacted_text,
        )?;
        let timings = generation
            .as_ref()
            .map(|g| g.timings.clone())
            .unwrap_or_default();
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let row = QualificationRow {
            service: qualification.service.clone(),
            intent: qualification.intent.clone(),
            urgency: qualification.urgency.clone(),
            temperature: qualification.temperature.clone(),
            language: qualification.language.clone(),
            missing_fields: qualification.missing_fields.clone(),
            summary: qualification.summary.clone(),
            score: qualification.score,
            model_sha256: self.model_sha256.to_string(),
            prompt_version: PROMPT_VERSION.to_string(),
            queue_ms: timings.queue_ms,
            prompt_ms: timings.prompt_ms,
            generate_ms: timings.generate_ms,
            total_ms,
        };
        let status = if qualification.intent == "spam" {
            "spam"
        } else {
            "pending_review"
        };
        let draft_row = draft.map(|d| DraftRow {
            text: d.text,
            template_kind: d.template_kind,
            template_version: d.template_version,
            template_service: d.template_service,
        });
        let stored = self
            .store
            .call(move |conn| {
                store::queries::finish_lead(conn, id, status, &row, draft_row.as_ref())
            })
            .await?;
        if !stored {
            tracing::info!(
                lead_id = id,
                "consent withdrawn while the model ran; result discarded"
            );
            return Ok(());
        }
        record_metrics(&qualification, &timings, total_ms);
        tracing::info!(
            lead_id = id,
            channel = %work.channel,
            bytes = work.redacted_text.len(),
            prompt_tokens = timings.prompt_tokens,
            cached_tokens = timings.cached_tokens,
            generated_tokens = timings.generated_tokens,
            queue_ms = timings.queue_ms,
            prompt_ms = timings.prompt_ms,
            generate_ms = timings.generate_ms,
            total_ms,
            status,
            "lead qualified"
        );
        Ok(())
    }
}

fn record_metrics(
    qualification: &crate::qualify::Qualification,
    timings: &crate::engine::Timings,
    total_ms: f64,
) {
    metrics::histogram!("leadgate_lead_to_draft_seconds").record(total_ms / 1000.0);
    if timings.generate_ms > 0.0 {
        let rate = timings.generated_tokens as f64 / (timings.generate_ms / 1000.0);
        metrics::histogram!("leadgate_generated_tokens_per_second").record(rate);
    }
    metrics::counter!(
        "leadgate_leads_qualified_total",
        "service" => qualification.service.clone(),
        "intent" => qualification.intent.clone(),
        "temperature" => qualification.temperature.clone(),
    )
    .increment(1);
}
