//! Delivering AddActivities batches to `WOPIGATE_ACTIVITY_WEBHOOK`. Requests only put a
//! delivery in a bounded queue (never waiting: a full queue drops it, with a warning and a
//! metric); a task started with the server POSTs each one, signed, retrying network errors, 429
//! and 5xx with exponential backoff a bounded number of times.
//!
//! Every attempt carries `X-Wopigate-Delivery` (the same id on each attempt, so a receiver can
//! drop repeats), `X-Wopigate-Timestamp` (Unix seconds of the attempt) and
//! `X-Wopigate-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, keyed by
//! `WOPIGATE_ACTIVITY_WEBHOOK_SECRET`: the timestamp is inside the MAC, so a receiver that
//! refuses old timestamps cannot be fed a recorded delivery again.
//!
//! The URL may carry credentials: logs show it as `discovery::shown_source` does, and reqwest's
//! errors (which print the URL) only by their kind. Deliveries still queued when the process
//! stops are lost: the store keeps every accepted activity regardless.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Semaphore;

use crate::config::{Secret, WebhookConfig};
use crate::discovery::{shown_source, without_url};
use crate::metrics::Metrics;

/// Deliveries waiting to be sent; more are dropped.
pub const QUEUE: usize = 1024;
/// Deliveries being sent (or waiting to retry) at once.
pub const IN_FLIGHT: usize = 8;
/// Attempts per delivery, the first included.
pub const ATTEMPTS: u32 = 6;
/// The wait before the first retry; doubled after each (plus up to a quarter of jitter).
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// One attempt, connection and answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub const DELIVERY_HEADER: &str = "X-Wopigate-Delivery";
pub const TIMESTAMP_HEADER: &str = "X-Wopigate-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Wopigate-Signature";

/// One JSON body to deliver, and its id.
pub struct Delivery {
    pub id: String,
    pub body: Vec<u8>,
}

pub struct Webhook {
    sender: mpsc::Sender<Delivery>,
    /// Taken by `spawn_sender` (the server's; the `open` command sends nothing).
    receiver: Mutex<Option<mpsc::Receiver<Delivery>>>,
    target: Arc<Target>,
}

struct Target {
    url: Secret,
    /// The URL as logs may show it.
    shown: String,
    secret: Secret,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth another try (network error, timeout, 429, 5xx): why.
    Retry(String),
    /// The receiver said no (another 4xx, a redirect): retrying would not help.
    Refused(u16),
}

/// `sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>` keyed by `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhook {
    pub fn new(config: &WebhookConfig, metrics: Arc<Metrics>) -> Webhook {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            // A redirect would carry the signed body somewhere the operator did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let target = Target {
            shown: shown_source(config.url.expose()),
            url: config.url.clone(),
            secret: config.secret.clone(),
            client,
            metrics,
        };
        Webhook { sender, receiver: Mutex::new(Some(receiver)), target: Arc::new(target) }
    }

    /// Queues a delivery without waiting; `false` when it was dropped (queue full).
    pub fn enqueue(&self, delivery: Delivery) -> bool {
        match self.sender.try_send(delivery) {
            Ok(()) => true,
            Err(TrySendError::Full(d) | TrySendError::Closed(d)) => {
                self.target.metrics.activity_delivery("dropped");
                tracing::warn!(delivery_id = %d.id, webhook = %self.target.shown, queued = QUEUE, "activity webhook queue is full: delivery dropped");
                false
            }
        }
    }

    /// Starts the task that sends what is queued (once; later calls do nothing).
    pub fn spawn_sender(&self) {
        let Some(mut receiver) = self.receiver.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let target = self.target.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            while let Some(delivery) = receiver.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let target = target.clone();
                tokio::spawn(async move {
                    target.deliver(delivery).await;
                    drop(permit);
                });
            }
        });
    }
}

impl Target {
    async fn deliver(&self, delivery: Delivery) {
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            match self.attempt(&delivery).await {
                Attempt::Delivered => {
                    self.metrics.activity_delivery("delivered");
                    tracing::debug!(delivery_id = %delivery.id, attempt, "activity webhook delivered");
                    return;
                }
                Attempt::Refused(status) => {
                    self.metrics.activity_delivery("failed");
                    tracing::warn!(delivery_id = %delivery.id, status, webhook = %self.shown, "activity webhook refused the delivery; not retried");
                    return;
                }
                Attempt::Retry(reason) if attempt == ATTEMPTS => {
                    self.metrics.activity_delivery("failed");
                    tracing::warn!(delivery_id = %delivery.id, %reason, attempts = ATTEMPTS, webhook = %self.shown, "activity webhook delivery failed; giving up");
                    return;
                }
                Attempt::Retry(reason) => {
                    self.metrics.activity_delivery("retried");
                    let jitter = rand::thread_rng().gen_range(0..=wait.as_millis() as u64 / 4);
                    let pause = wait + Duration::from_millis(jitter);
                    tracing::info!(delivery_id = %delivery.id, %reason, attempt, retry_in_ms = pause.as_millis() as u64, webhook = %self.shown, "activity webhook delivery failed; retrying");
                    tokio::time::sleep(pause).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let sent = self
            .client
            .post(self.url.expose())
            .header("Content-Type", "application/json")
            .header(DELIVERY_HEADER, &delivery.id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(self.secret.expose().as_bytes(), timestamp, &delivery.body))
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Err(e) => Attempt::Retry(without_url(&e)),
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Attempt::Delivered
                } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Attempt::Retry(format!("HTTP {}", status.as_u16()))
                } else {
                    Attempt::Refused(status.as_u16())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
