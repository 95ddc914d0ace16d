//! A node's events made durable for its owner's webhooks. The node records an
//! event before it tells ldk-node the event is handled, under the same fence as its
//! state writes, so an event is neither lost (the node crashes after ldk-node forgot
//! it) nor sent by a stale copy. One delivery record per event and webhook is written
//! in that one transaction; the leader's [`super::deliver`] loop sends them.

use lnswarm_common::{
    api::{NodeEventRecord, OutgoingWebhook, WebhookDelivery},
    ids::now_unix_ms,
};

use crate::{
    node_state::fence::{self, FenceError},
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

/// Most events one call may record.
pub const MAX_EVENTS_PER_CALL: usize = 100;
/// Largest `fields` object of one event.
pub const MAX_FIELDS_BYTES: usize = 64 * 1024;
/// Longest event id.
pub const MAX_EVENT_ID_LEN: usize = 128;
/// The event types a node may record.
pub const EVENT_TYPES: &[&str] = &["invoice_payment"];

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error("invalid event: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The JSON body POSTed for `event` of `node_id`: the same bytes on every attempt.
fn body(node_id: &str, event: &NodeEventRecord) -> Result<Vec<u8>, EventError> {
    let invalid = |m: String| EventError::Invalid(format!("{}: {m}", event.event_id));
    if event.event_id.is_empty()
        || event.event_id.len() > MAX_EVENT_ID_LEN
        || !event
            .event_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(EventError::Invalid(format!(
            "event_id must be 1 to {MAX_EVENT_ID_LEN} characters of A-Z, a-z, 0-9, - and _"
        )));
    }
    if !EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Err(invalid(format!(
            "unknown event_type (known: {})",
            EVENT_TYPES.join(", ")
        )));
    }
    if event.fields.len() > MAX_FIELDS_BYTES {
        return Err(invalid(format!("fields exceed {MAX_FIELDS_BYTES} bytes")));
    }
    let fields: serde_json::Value = serde_json::from_slice(&event.fields)
        .map_err(|e| invalid(format!("fields are not JSON: {e}")))?;
    if !fields.is_object() {
        return Err(invalid("fields must be a JSON object".into()));
    }
    let body = serde_json::json!({
        "version": 1,
        "event_id": event.event_id,
        "node_id": node_id,
        "event_type": event.event_type,
        "timestamp_unix_ms": event.timestamp_unix_ms,
        "event": fields,
    });
    serde_json::to_vec(&body).map_err(|e| invalid(e.to_string()))
}

/// Records `events` of `node_id` if `epoch` is its lease's: one delivery per event
/// and webhook, in one transaction. Returns how many deliveries were written; an
/// event whose delivery is still pending is left as it is.
pub async fn record(
    store: &Store,
    node_id: &str,
    epoch: u64,
    events: &[NodeEventRecord],
) -> Result<u32, EventError> {
    if events.len() > MAX_EVENTS_PER_CALL {
        return Err(EventError::Invalid(format!(
            "at most {MAX_EVENTS_PER_CALL} events per call"
        )));
    }
    let bodies = events
        .iter()
        .map(|e| body(node_id, e))
        .collect::<Result<Vec<_>, _>>()?;
    let lease_key = keys::node_lease(node_id);
    let (written, _) = store
        .update("the node's lease", |store| {
            let version = fence::current_lease(store, node_id, epoch)?;
            let webhooks = store.list::<OutgoingWebhook>(&keys::webhooks_of(node_id))?;
            let mut txn = TxnBuilder::new().require_version(&lease_key, version);
            let mut written = 0u32;
            let now = now_unix_ms();
            for (webhook_version, webhook) in &webhooks {
                let before = written;
                for (event, body) in events.iter().zip(&bodies) {
                    let key = keys::webhook_delivery(node_id, webhook.id, &event.event_id);
                    if store.state().get(&key)?.is_some() {
                        continue;
                    }
                    let delivery = WebhookDelivery {
                        node_id: node_id.to_string(),
                        webhook_id: webhook.id,
                        event_id: event.event_id.clone(),
                        event_type: event.event_type.clone(),
                        body_sealed: store.seal(&key, body)?,
                        attempts: 0,
                        next_attempt_unix_ms: now,
                        last_error: String::new(),
                        created_unix_ms: now,
                    };
                    txn = txn.require_absent(&key).put(&key, &delivery);
                    written += 1;
                }
                if written > before {
                    // A webhook deleted meanwhile fails this check, and the retry
                    // writes nothing for it.
                    txn = txn.require_version(keys::webhook(node_id, webhook.id), *webhook_version);
                }
            }
            Ok::<_, EventError>(if written == 0 {
                Attempt::Done(0)
            } else {
                Attempt::Propose(txn.build(), written)
            })
        })
        .await?;
    Ok(written)
}
