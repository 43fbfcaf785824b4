//! Webhooks: a signed JSON POST to every configured URL when a ramp starts, advances,
//! completes, pauses, is killed or aborted.
//!
//! Each delivery is signed with HMAC-SHA256 over `{timestamp}.{body}` with the configured
//! secret, so a receiver can check both who sent it and that it is fresh:
//!
//! ```text
//! X-Ripcord-Event: ramp.kill
//! X-Ripcord-Delivery: 7f3a...            (the same on every retry of one delivery)
//! X-Ripcord-Timestamp: 1764320000        (Unix seconds)
//! X-Ripcord-Signature: sha256=<hex HMAC-SHA256(secret, "1764320000." + body)>
//! ```
//!
//! A delivery that fails (no answer, or a status other than 2xx) is retried with doubling
//! backoff; what failed last, per ramp, is in the ramp's status. Deliveries are stored with
//! the decision ([`crate::store::PendingWebhook`]) and forgotten once delivered or given
//! up: after a crash, the restarted server sends what was left, under the same
//! `X-Ripcord-Delivery`, so a receiver gets every notice at least once and can drop a
//! repeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use ripcord_engine::Stage;
use serde::Serialize;
use sha2::Sha256;

use crate::clock::{rfc3339, unix_now};
use crate::store::{PendingWebhook, RampRecord, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    Start,
    Advance,
    Complete,
    Pause,
    Kill,
    Abort,
    /// Something a person should know that did not stop the ramp: the payload's `alert`
    /// says what.
    Alert,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Start => "ramp.start",
            WebhookEvent::Advance => "ramp.advance",
            WebhookEvent::Complete => "ramp.complete",
            WebhookEvent::Pause => "ramp.pause",
            WebhookEvent::Kill => "ramp.kill",
            WebhookEvent::Abort => "ramp.abort",
            WebhookEvent::Alert => "ramp.alert",
        }
    }
}

/// The body of a delivery.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Payload {
    pub event: &'static str,
    pub environment: String,
    pub flag: String,
    pub generation: u64,
    pub status: &'static str,
    pub stage: Stage,
    pub percentage: f64,
    pub reason: String,
    /// The incident a kill or a regression pause recorded: `GET /api/v1/incidents/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<u64>,
    /// Why a paused ramp is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<ripcord_engine::ramp::PauseReason>,
    /// What a `ramp.alert` is about: `no_data` (no observation for `max_silence`) or
    /// `sample_ratio_mismatch` (with `on_srm: warn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<&'static str>,
    /// RFC 3339.
    pub time: String,
}

impl Payload {
    pub fn new(
        event: WebhookEvent,
        record: &RampRecord,
        reason: String,
        incident: Option<u64>,
        time: &str,
    ) -> Payload {
        Payload {
            event: event.as_str(),
            environment: record.environment.clone(),
            flag: record.flag.clone(),
            generation: record.state.generation,
            status: record.state.status.as_str(),
            stage: record.state.stage,
            percentage: record.state.percentage,
            reason,
            incident,
            pause_reason: record.state.pause_reason,
            alert: None,
            time: time.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    pub secret: Option<String>,
    /// Tries per delivery, the first included.
    pub attempts: u32,
    /// The wait before the first retry; each next one waits twice as long.
    pub backoff: Duration,
}

/// Deliveries of one ramp, as its status shows them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WebhookStatus {
    pub delivered: u64,
    /// Deliveries that failed on every try.
    pub failed: u64,
    /// Tries that failed, retries included.
    pub failed_attempts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<WebhookFailure>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WebhookFailure {
    pub url: String,
    pub event: String,
    pub attempt: u32,
    pub error: String,
    /// RFC 3339.
    pub time: String,
}

type Deliveries = HashMap<(String, String), WebhookStatus>;

pub struct Webhooks {
    config: WebhookConfig,
    client: reqwest::Client,
    deliveries: Arc<Mutex<Deliveries>>,
}

impl Webhooks {
    /// Refuses URLs without a secret: an unsigned kill notice could be forged by anyone who
    /// can reach the receiver.
    pub fn new(config: WebhookConfig) -> anyhow::Result<Webhooks> {
        anyhow::ensure!(
            config.urls.is_empty() || config.secret.as_deref().is_some_and(|s| !s.is_empty()),
            "RIPCORD_WEBHOOK_URLS needs RIPCORD_WEBHOOK_SECRET: deliveries are signed"
        );
        for url in &config.urls {
            let parsed = reqwest::Url::parse(url)
                .map_err(|error| anyhow::anyhow!("webhook URL `{url}`: {error}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "webhook URL `{url}`: only http and https are supported"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Webhooks {
            config,
            client,
            deliveries: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn none() -> Webhooks {
        Webhooks::new(WebhookConfig {
            urls: Vec::new(),
            secret: None,
            attempts: 1,
            backoff: Duration::from_secs(1),
        })
        .expect("no URLs is always a valid configuration")
    }

    pub fn status(&self, environment: &str, flag: &str) -> WebhookStatus {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(environment.to_string(), flag.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The delivery of `payload`, to be stored with its decision; `None` when no URL is
    /// configured.
    pub fn pending(&self, payload: &Payload) -> Option<PendingWebhook> {
        if self.config.urls.is_empty() {
            return None;
        }
        Some(PendingWebhook {
            id: delivery_id(),
            event: payload.event.to_string(),
            body: serde_json::to_value(payload).ok()?,
        })
    }

    /// Delivers `pending` to every URL in the background, with retries, and forgets it in
    /// `store` once every URL has it or was given up on.
    pub fn deliver(&self, pending: PendingWebhook, store: Arc<dyn Store>) {
        let Ok(body) = serde_json::to_vec(&pending.body) else {
            return;
        };
        let text = |field: &str| pending.body[field].as_str().unwrap_or_default().to_string();
        let key = (text("environment"), text("flag"));
        if self.config.urls.is_empty() {
            // Configured away since it was stored: nobody to send it to.
            tokio::spawn(async move {
                if let Err(error) = store.webhook_done(&pending.id).await {
                    tracing::warn!(%error, "forgetting an undeliverable webhook failed");
                }
            });
            return;
        }
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(self.config.urls.len()));
        for url in &self.config.urls {
            let task = Delivery {
                client: self.client.clone(),
                url: url.clone(),
                body: body.clone(),
                event: pending.event.clone(),
                delivery: pending.id.clone(),
                secret: self.config.secret.clone().unwrap_or_default(),
                attempts: self.config.attempts.max(1),
                backoff: self.config.backoff,
                key: key.clone(),
                deliveries: Arc::clone(&self.deliveries),
            };
            let (remaining, store, id) = (
                Arc::clone(&remaining),
                Arc::clone(&store),
                pending.id.clone(),
            );
            tokio::spawn(async move {
                task.run().await;
                if remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                    if let Err(error) = store.webhook_done(&id).await {
                        // Sent again after a restart: a receiver drops the repeat by its id.
                        tracing::warn!(%error, "forgetting a delivered webhook failed");
                    }
                }
            });
        }
    }
}

struct Delivery {
    client: reqwest::Client,
    url: String,
    body: Vec<u8>,
    event: String,
    delivery: String,
    secret: String,
    attempts: u32,
    backoff: Duration,
    key: (String, String),
    deliveries: Arc<Mutex<Deliveries>>,
}

impl Delivery {
    async fn run(self) {
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts {
            let timestamp = unix_now();
            let result = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-ripcord-event", &self.event)
                .header("x-ripcord-delivery", &self.delivery)
                .header("x-ripcord-timestamp", timestamp.to_string())
                .header(
                    "x-ripcord-signature",
                    signature(self.secret.as_bytes(), timestamp, &self.body),
                )
                .body(self.body.clone())
                .send()
                .await;
            let error = match result {
                Ok(response) if response.status().is_success() => {
                    self.record(|status| status.delivered += 1);
                    return;
                }
                Ok(response) => format!("answered {}", response.status()),
                Err(error) => error.to_string(),
            };
            tracing::warn!(url = %self.url, event = %self.event, attempt, "webhook failed: {error}");
            let last = attempt == self.attempts;
            self.record(|status| {
                status.failed_attempts += 1;
                if last {
                    status.failed += 1;
                }
                status.last_failure = Some(WebhookFailure {
                    url: self.url.clone(),
                    event: self.event.to_string(),
                    attempt,
                    error: error.clone(),
                    time: rfc3339(unix_now()),
                });
            });
            if !last {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(300));
            }
        }
    }

    fn record(&self, update: impl FnOnce(&mut WebhookStatus)) {
        let mut deliveries = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        update(deliveries.entry(self.key.clone()).or_default());
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn delivery_id() -> String {
    let mut bytes = [0u8; 12];
    // A repeated id would only make a receiver's de-duplication drop a notice; fall back to
    // the clock rather than not deliver.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&unix_now().to_be_bytes());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"whsec-test",
        // b'1764320000.{"event":"ramp.kill"}', hashlib.sha256).hexdigest().
        let body = br#"{"event":"ramp.kill"}"#;
        assert_eq!(
            signature(b"whsec-test", 1_764_320_000, body),
            "sha256=c0a932b37bb153dfac25014fdd45a6dafd9ed6b185b5d9c210d90e2c785e3579"
        );
        assert_ne!(
            signature(b"whsec-test", 1_764_320_001, body),
            signature(b"whsec-test", 1_764_320_000, body),
            "the timestamp is signed, so a replayed delivery shows its age"
        );
    }
}
