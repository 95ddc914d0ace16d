//! The leader sends pending webhook deliveries. A delivery is a record in the
//! replicated store, so a leader that dies mid-send leaves it for the next one:
//! delivery is at least once, and receivers de-duplicate by `event_id`.
//!
//! - 2xx: delivered, the record is removed;
//! - 4xx: the receiver refused it, the record is removed (a retry would be refused
//!   again);
//! - anything else (5xx, timeout, no connection): retried after the cluster's first
//!   retry wait, doubling each time, until the cluster's attempts are spent.
//!
//! Redirects are not followed, and logs name the node and webhook id, never the URI
//! (it may carry a token) or the body (it carries preimages).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use lnswarm_common::{
    api::{ClusterSettings, OutgoingWebhook, WebhookDelivery},
    ids::now_unix_ms,
    webhook_signature,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::registry;
use crate::{
    cluster,
    store::{keys, Store, StoreError, TxnBuilder},
};

/// How often the leader looks for due deliveries.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// Most deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 16;
/// Longest `last_error` kept.
const MAX_ERROR_LEN: usize = 200;

/// The HTTP client webhooks are sent with: the system's web roots, plus the
/// operator's own CA if one was given (`--webhook-ca-file`).
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
}

impl Deliverer {
    pub fn new(extra_ca_pem: Option<&[u8]>) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lnswarm-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Deliverer {
            client: builder.build()?,
        })
    }

    /// Sends due deliveries until `stop` fires (this manager stops leading).
    pub async fn run(self, store: Store, stop: CancellationToken) {
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut sends = JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(SCAN_EVERY) => {}
            }
            while sends.try_join_next().is_some() {}
            let due = match store.read_off_thread(due_deliveries).await {
                Ok(due) => due,
                Err(e) => {
                    debug!(error = %e, "webhook scan failed");
                    continue;
                }
            };
            let Ok((_, record)) = cluster::load(&store) else {
                continue;
            };
            let settings = cluster::effective_settings(&record);
            for (key, version, delivery) in due {
                if sends.len() >= MAX_IN_FLIGHT {
                    break;
                }
                if !in_flight
                    .lock()
                    .expect("in-flight lock")
                    .insert(key.clone())
                {
                    continue;
                }
                let send = Send {
                    client: self.client.clone(),
                    store: store.clone(),
                    settings: settings.clone(),
                    key,
                    version,
                    delivery,
                };
                let in_flight = in_flight.clone();
                sends.spawn(async move {
                    let key = send.key.clone();
                    send.run().await;
                    in_flight.lock().expect("in-flight lock").remove(&key);
                });
            }
        }
        // Sends cut short here are sent again by the next leader.
        sends.shutdown().await;
    }
}

/// Every delivery whose next attempt is due, oldest first.
fn due_deliveries(store: &Store) -> Result<Vec<(String, u64, WebhookDelivery)>, StoreError> {
    let now = now_unix_ms();
    let mut due = Vec::new();
    for (key, v) in store.state().scan(keys::WEBHOOK_DELIVERIES)? {
        let delivery = v.decode::<WebhookDelivery>()?;
        if delivery.next_attempt_unix_ms <= now {
            due.push((key, v.version, delivery));
        }
    }
    due.sort_by_key(|(_, _, d)| d.next_attempt_unix_ms);
    Ok(due)
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    Rejected(String),
    Failed(String),
}

/// One attempt at one delivery.
struct Send {
    client: reqwest::Client,
    store: Store,
    settings: ClusterSettings,
    key: String,
    version: u64,
    delivery: WebhookDelivery,
}

impl Send {
    async fn run(self) {
        let d = &self.delivery;
        let webhook = match self
            .store
            .get::<OutgoingWebhook>(&keys::webhook(&d.node_id, d.webhook_id))
        {
            Ok(Some((_, w))) => w,
            // Deleted since (its deliveries go with it, unless this one raced).
            Ok(None) => return self.finish(None).await,
            Err(e) => {
                return warn!(node = %d.node_id, webhook = d.webhook_id, error = %e, "cannot read a webhook")
            }
        };
        let prepared = registry::secret(&self.store, &webhook)
            .and_then(|secret| Ok((secret, registry::body(&self.store, &self.key, d)?)));
        let (secret, body) = match prepared {
            Ok(p) => p,
            Err(e) => {
                return warn!(node = %d.node_id, webhook = d.webhook_id, error = %e, "cannot open a webhook delivery")
            }
        };
        let outcome = self.post(&webhook.uri, &secret, body).await;
        let attempts = d.attempts + 1;
        // What is counted, and the record's next state (`None`: removed).
        let (counted, next) = match outcome {
            Outcome::Delivered => {
                debug!(node = %d.node_id, webhook = d.webhook_id, event = %d.event_id, attempts, "webhook delivered");
                ("delivered", None)
            }
            Outcome::Rejected(why) => {
                warn!(node = %d.node_id, webhook = d.webhook_id, event = %d.event_id, why = %why, "the webhook's receiver refused an event; not retried");
                ("rejected", None)
            }
            Outcome::Failed(why) if attempts >= self.settings.webhook_attempts => {
                warn!(node = %d.node_id, webhook = d.webhook_id, event = %d.event_id, attempts, why = %why, "webhook event dropped after its last attempt");
                ("dropped", None)
            }
            Outcome::Failed(why) => {
                info!(node = %d.node_id, webhook = d.webhook_id, event = %d.event_id, attempts, why = %why, "webhook attempt failed; will retry");
                let wait = retry_wait(self.settings.webhook_first_retry_secs, attempts);
                let next = WebhookDelivery {
                    attempts,
                    next_attempt_unix_ms: now_unix_ms()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
                    last_error: why,
                    ..d.clone()
                };
                ("retried", Some(next))
            }
        };
        crate::metrics::events()
            .webhook_deliveries
            .get_or_create(&crate::metrics::Outcome { outcome: counted })
            .inc();
        self.finish(next).await;
    }

    async fn post(&self, uri: &str, secret: &str, body: Vec<u8>) -> Outcome {
        let signature = webhook_signature::sign(secret, &body);
        let sent = self
            .client
            .post(uri)
            .timeout(Duration::from_secs(self.settings.webhook_timeout_secs))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook_signature::HEADER, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) if r.status().is_client_error() => Outcome::Rejected(r.status().to_string()),
            Ok(r) => Outcome::Failed(r.status().to_string()),
            // Without the URL: it may carry a token.
            Err(e) => Outcome::Failed(clip(&error_text(&e.without_url()))),
        }
    }

    /// Removes the delivery (`None`) or writes its next attempt, if no one changed
    /// it meanwhile (a delete of its webhook, another leader's attempt).
    async fn finish(self, next: Option<WebhookDelivery>) {
        let txn = TxnBuilder::new().require_version(&self.key, self.version);
        let txn = match &next {
            Some(d) => txn.put(&self.key, d),
            None => txn.delete_tagged(&self.key, Vec::<String>::new()),
        };
        if let Err(e) = self.store.propose(txn.build()).await {
            let d = &self.delivery;
            debug!(node = %d.node_id, webhook = d.webhook_id, error = %e, "could not record a webhook attempt; it will be made again");
        }
    }
}

/// The wait after attempt `attempts` (1 = the first) failed: the first retry wait,
/// doubling each time.
fn retry_wait(first_secs: u64, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    Duration::from_secs(first_secs.saturating_mul(1u64 << doublings))
}

/// A reqwest error with its causes (reqwest's own text says only "error sending
/// request").
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_ERROR_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_the_first_wait_then_double() {
        assert_eq!(retry_wait(60, 1), Duration::from_secs(60));
        assert_eq!(retry_wait(60, 2), Duration::from_secs(120));
        assert_eq!(retry_wait(60, 4), Duration::from_secs(480));
        // Bounded, not overflowing, for any attempt count.
        assert!(retry_wait(86_400, u32::MAX) >= Duration::from_secs(86_400));
    }
}
