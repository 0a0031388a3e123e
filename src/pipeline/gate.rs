//! The consent step of a lead: finding its subject, turning a consent given in the same
//! request into a consent event, recording consent events, and stopping a lead whose
//! subject withdrew while it waited for the model.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Contact, Pipeline, PipelineError};
use crate::compliance::requests::schedule_withdrawal_erasure;
use crate::consent::{ContactFields, LEAD_PROCESSING, Subject, subject_of_lead};
use crate::redact::Span;
use crate::store::consent::{ConsentRecord, EventKind, NewConsentEvent, Recorded, WithdrawalHook};
use crate::store::{self, LeadGate};

/// How often a lead that waits for the model checks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Whether a lead is checked for consent.
#[derive(Debug, Clone)]
pub enum ConsentGate {
    /// A lead sent through the API: processed only with a valid consent of its subject.
    Checked { given: Option<GivenConsent> },
    /// A lead from the operator's own command line (`qualify`, `eval`), not checked.
    NotChecked,
}

/// A consent given in the same request as the lead.
#[derive(Debug, Clone)]
pub struct GivenConsent {
    pub granted: bool,
    /// `None` for the active version.
    pub text_version: Option<i64>,
    /// The bot's message id; `None` for the lead's `external_id`.
    pub evidence: Option<String>,
}

/// Returns the lead's subject, or the lead itself when it has no phone, e-mail or handle
/// (a consent given then covers that lead alone).
pub(super) fn lead_subject(
    contact: &Contact,
    spans: &[Span],
    channel: &str,
    external_id: &str,
) -> Result<Subject, PipelineError> {
    let fields = ContactFields {
        phone: contact.phone.as_deref(),
        email: contact.email.as_deref(),
        handle: contact.handle.as_deref(),
    };
    let subject = subject_of_lead(fields, spans)?;
    Ok(subject.unwrap_or_else(|| Subject::lead(channel, external_id)))
}

/// Builds the store's consent check for a lead of `subject`.
pub(super) fn lead_gate(
    gate: ConsentGate,
    subject: &Subject,
    channel: &str,
    external_id: &str,
    received_at: Option<&str>,
    key_id: Option<i64>,
    on_withdrawal: WithdrawalHook,
) -> Option<LeadGate> {
    let ConsentGate::Checked { given } = gate else {
        return None;
    };
    let consent = given.map(|given| NewConsentEvent {
        subject_kind: subject.kind.as_str().to_string(),
        subject: subject.value.clone(),
        event: if given.granted {
            EventKind::Granted
        } else {
            EventKind::Withdrawn
        },
        purpose: LEAD_PROCESSING.to_string(),
        text_version: given.text_version,
        channel: channel.to_string(),
        evidence: given.evidence.unwrap_or_else(|| external_id.to_string()),
        at: received_at.map(str::to_string),
        key_id,
    });
    Some(LeadGate {
        purpose: LEAD_PROCESSING.to_string(),
        consent,
        on_withdrawal: Some(on_withdrawal),
    })
}

/// Returns the time a withdrawal took effect: the client's time of the message, or the
/// time it was stored when that is earlier or the message time is unreadable.
fn withdrawal_time(record: &ConsentRecord) -> OffsetDateTime {
    let recorded = crate::clock::parse(&record.recorded_at).unwrap_or_else(|_| crate::clock::now());
    match crate::clock::parse(&record.at) {
        Ok(at) if at < recorded => at,
        _ => recorded,
    }
}

impl Pipeline {
    /// Returns the work done in the transaction that logs a withdrawal of `lead_processing`:
    /// scheduling the erasure of the subject's leads, due `retention.withdrawal_erase_days`
    /// after the withdrawal.
    pub(super) fn withdrawal_hook(&self) -> WithdrawalHook {
        let retention = self.settings.retention.clone();
        Arc::new(move |tx, record| {
            let scheduled = schedule_withdrawal_erasure(
                tx,
                &record.subject_kind,
                &record.subject,
                withdrawal_time(record),
                &retention,
            )?;
            if let Some(scheduled) = scheduled {
                tracing::info!(
                    consent_event = record.id,
                    erasure_request = scheduled.request_id,
                    subject_id = scheduled.subject_id,
                    due_at = %scheduled.due_at,
                    "erasure scheduled after a withdrawal of consent"
                );
            }
            Ok(())
        })
    }

    /// Appends a consent event. A withdrawal for `lead_processing` also stops the subject's
    /// leads that wait for the model and its drafts that wait for review, and schedules the
    /// erasure of its leads (see [`Pipeline::withdrawal_hook`]).
    pub async fn record_consent(&self, event: NewConsentEvent) -> Result<Recorded, PipelineError> {
        let stops_leads = event.purpose == LEAD_PROCESSING;
        let hook = self.withdrawal_hook();
        let (recorded, stopped) = self
            .store
            .call(move |conn| store::consent::record_event(conn, &event, stops_leads, Some(&hook)))
            .await?;
        let record = recorded.record();
        tracing::info!(
            consent_event = record.id,
            event = record.event.as_str(),
            subject_kind = %record.subject_kind,
            purpose = %record.purpose,
            repeated = matches!(recorded, Recorded::Repeated(_)),
            stopped_leads = stopped.leads,
            stopped_drafts = stopped.drafts,
            "consent event recorded"
        );
        Ok(recorded)
    }

    /// Returns true when the subject of a lead has a valid consent for lead processing.
    pub(super) async fn subject_consented(
        &self,
        subject: &Option<(String, String)>,
    ) -> Result<bool, PipelineError> {
        let Some((kind, value)) = subject.clone() else {
            return Ok(true);
        };
        let consented = self
            .store
            .call(move |conn| store::consent::has_consent(conn, &kind, &value, LEAD_PROCESSING))
            .await?;
        Ok(consented)
    }

    /// Resolves once lead `id` no longer waits for the model (a withdrawal made it
    /// `consent_required`). Leads from the command line never stop.
    pub(super) async fn stopped(&self, id: i64, checked: bool) {
        if !checked {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(STOP_POLL).await;
            let status = self
                .store
                .call(move |conn| store::queries::lead_status(conn, id))
                .await;
            match status {
                Ok(Some(status)) if status == "received" => {}
                Ok(_) => return,
                // A failing database also fails the lead when its result is stored.
                Err(error) => tracing::warn!(lead_id = id, %error, "cannot read the lead status"),
            }
        }
    }
}
