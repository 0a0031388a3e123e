//! Sends approved replies to the bot's webhook: a JSON POST per reply with a bearer token,
//! retried with doubling waits, each outcome stored in `webhook_deliveries`.
//!
//! The queue lives in the database, so a delivery interrupted by a restart is tried again
//! by the next run. Replies go out in reply id order within each pass; a reply that keeps
//! failing does not hold back the ones after it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Webhook as WebhookSettings;
use crate::review::reply_view;
use crate::store::journal::Actor;
use crate::store::webhooks::{self as queue, Attempt, now_ms};
use crate::store::{Author, Store, StoreError, review};

/// The maximum wait between two attempts of one reply.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(600);
/// Deliveries sent per pass before the queue is read again.
const BATCH: usize = 32;

/// A running delivery task; clones share it.
///
/// NOTE: there is one URL for all bots, so every bot key's replies go to it; polling is
/// the way to keep bots apart.
#[derive(Clone)]
pub struct Webhook {
    wake: Arc<Notify>,
}

/// The webhook settings, the bearer token and the HTTP client.
struct Target {
    settings: WebhookSettings,
    token: String,
    agent: ureq::Agent,
}

impl Webhook {
    /// Starts the delivery task on the current tokio runtime.
    pub fn start(store: Store, settings: WebhookSettings, token: String) -> Webhook {
        let wake = Arc::new(Notify::new());
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .redirects(0)
            .build();
        let target = Arc::new(Target {
            settings,
            token,
            agent,
        });
        tokio::spawn(run(store, target, wake.clone()));
        Webhook { wake }
    }

    /// Tells the task that a delivery was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn run(store: Store, target: Arc<Target>, wake: Arc<Notify>) {
    loop {
        if let Err(error) = deliver_due(&store, &target).await {
            tracing::error!(%error, "reading the webhook queue failed");
        }
        let next = store.call(|conn| queue::next_due_ms(conn)).await;
        let wait = match next {
            Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
            Ok(None) => MAX_RETRY_WAIT,
            Err(error) => {
                tracing::error!(%error, "reading the webhook queue failed");
                MAX_RETRY_WAIT
            }
        };
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        }
    }
}

async fn deliver_due(store: &Store, target: &Arc<Target>) -> Result<(), StoreError> {
    let due = store.call(|conn| queue::due(conn, now_ms(), BATCH)).await?;
    for reply_id in due {
        deliver(store, target, reply_id).await?;
    }
    Ok(())
}

/// Returns the wait before retry number `attempt` (1 for the first retry).
fn retry_wait(settings: &WebhookSettings, attempt: u32) -> Duration {
    let first = Duration::from_millis(settings.first_retry_ms);
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    first.saturating_mul(factor).min(MAX_RETRY_WAIT)
}

async fn deliver(store: &Store, target: &Arc<Target>, reply_id: i64) -> Result<(), StoreError> {
    let loaded = store
        .call(move |conn| {
            let reply = review::load_reply(conn, reply_id)?;
            let delivery = queue::load(conn, reply_id)?;
            Ok(reply.zip(delivery))
        })
        .await?;
    let Some((reply, delivery)) = loaded else {
        return Ok(());
    };
    let (view, shown) = reply_view(&reply);
    let body = serde_json::to_value(&view).map_err(|e| StoreError::Corrupt {
        column: "replies",
        message: e.to_string(),
    })?;
    let sender = target.clone();
    let result = tokio::task::spawn_blocking(move || send(&sender, &body))
        .await
        .unwrap_or_else(|_| Err((None, "the sending task stopped".to_string())));
    let attempt_number = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
    let attempt = match result {
        Ok(status) => {
            tracing::info!(
                reply_id,
                lead_id = reply.lead_id,
                status,
                "webhook delivered"
            );
            Attempt {
                http_status: Some(status),
                error: None,
                retry_at_ms: None,
            }
        }
        Err((status, error)) => {
            let retry_at_ms = (attempt_number < target.settings.max_attempts).then(|| {
                let wait = retry_wait(&target.settings, attempt_number);
                now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2)
            });
            tracing::warn!(
                reply_id,
                lead_id = reply.lead_id,
                attempt = attempt_number,
                status,
                error = %error,
                retry = retry_at_ms.is_some(),
                "webhook attempt failed"
            );
            Attempt {
                http_status: status,
                error: Some(error),
                retry_at_ms,
            }
        }
    };
    let delivered = attempt.error.is_none();
    let lead_id = reply.lead_id;
    store
        .call(move |conn| {
            queue::record(conn, reply_id, &attempt)?;
            if delivered {
                let actor = Author {
                    actor: Actor::System,
                    name: "webhook".to_string(),
                };
                review::journal_read(
                    conn,
                    "reply_sent",
                    lead_id,
                    &crate::review::REPLY_FIELDS,
                    &shown,
                    &actor,
                )?;
            }
            Ok(())
        })
        .await
}

/// Posts one reply; returns the HTTP status, or the status (if any) and what failed.
fn send(target: &Target, body: &serde_json::Value) -> Result<u16, (Option<u16>, String)> {
    let request = target
        .agent
        .post(&target.settings.url)
        .set("Authorization", &format!("Bearer {}", target.token));
    match request.send_json(body) {
        Ok(response) => Ok(response.status()),
        Err(ureq::Error::Status(status, _)) => {
            Err((Some(status), format!("the receiver answered HTTP {status}")))
        }
        // The transport error names the host and the failure kind, never the body.
        Err(ureq::Error::Transport(transport)) => Err((None, transport.kind().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_wait_doubles_up_to_the_cap() {
        let settings = WebhookSettings {
            url: "http://127.0.0.1:1/".to_string(),
            max_attempts: 20,
            first_retry_ms: 1000,
            timeout_ms: 1000,
        };
        assert_eq!(retry_wait(&settings, 1), Duration::from_secs(1));
        assert_eq!(retry_wait(&settings, 2), Duration::from_secs(2));
        assert_eq!(retry_wait(&settings, 4), Duration::from_secs(8));
        assert_eq!(retry_wait(&settings, 15), MAX_RETRY_WAIT);
    }
}
