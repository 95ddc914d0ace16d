//! An owner's outgoing webhooks: added, listed, deleted and their secrets rotated,
//! as Greenlight's Scheduler does. Secrets are sealed with the cluster's data key
//! and shown only when made. Deleting a webhook deletes its pending deliveries in
//! the same transaction, so nothing is sent to a URI the owner took back.

use lnswarm_common::{
    api::{HostedNode, OutgoingWebhook, WebhookDelivery},
    ids::now_unix_ms,
    webhook_signature,
};

use super::uri::{self, BadUri};
use crate::{
    cluster::{self, ClusterError},
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

/// Most webhooks one node may have.
pub const MAX_PER_NODE: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("this node is not registered")]
    NotRegistered,
    #[error(
        "this node already has {MAX_PER_NODE} webhooks, the most it may have; delete one first"
    )]
    TooMany,
    #[error("invalid webhook URI: {0}")]
    BadUri(#[from] BadUri),
    #[error("this node has no webhook {0}")]
    NotFound(i64),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new webhook's id and its secret (shown this once).
pub struct Added {
    pub id: i64,
    pub secret: String,
}

fn require_registered(store: &Store, node_id: &str) -> Result<(), WebhookError> {
    store
        .get::<HostedNode>(&keys::hosted_node(node_id))?
        .map(|_| ())
        .ok_or(WebhookError::NotRegistered)
}

/// Every webhook of `node_id`, by id.
pub fn list(store: &Store, node_id: &str) -> Result<Vec<OutgoingWebhook>, StoreError> {
    Ok(store
        .list::<OutgoingWebhook>(&keys::webhooks_of(node_id))?
        .into_iter()
        .map(|(_, w)| w)
        .collect())
}

/// The secret a webhook signs with.
pub fn secret(store: &Store, webhook: &OutgoingWebhook) -> Result<String, StoreError> {
    let key = keys::webhook(&webhook.node_id, webhook.id);
    let plain = store.open_sealed(&key, &webhook.secret_sealed)?;
    String::from_utf8(plain).map_err(|_| StoreError::Corrupt(format!("{key}: secret")))
}

/// Adds a webhook to `uri`; ids count up from 1 per node.
pub async fn add(store: &Store, node_id: &str, uri: &str) -> Result<Added, WebhookError> {
    store.read_barrier().await?;
    let (_, record) = cluster::load(store)?;
    let settings = cluster::effective_settings(&record);
    let url = uri::check(uri, settings.webhook_loopback_http)?;
    let secret = webhook_signature::new_secret();
    let (id, _) = store
        .update("the node's webhooks", |store| {
            require_registered(store, node_id)?;
            let existing = list(store, node_id)?;
            if existing.len() >= MAX_PER_NODE {
                return Err(WebhookError::TooMany);
            }
            let id = existing.iter().map(|w| w.id).max().unwrap_or(0) + 1;
            let key = keys::webhook(node_id, id);
            let webhook = OutgoingWebhook {
                node_id: node_id.to_string(),
                id,
                uri: url.to_string(),
                secret_sealed: store.seal(&key, secret.as_bytes())?,
                created_unix_ms: now_unix_ms(),
            };
            // Ids are the highest plus one, so two adds that raced (and would pass
            // the limit together) pick the same id and one of them fails this check.
            let txn = TxnBuilder::new().require_absent(&key);
            Ok::<_, WebhookError>(Attempt::Propose(txn.put(&key, &webhook).build(), id))
        })
        .await?;
    Ok(Added { id, secret })
}

/// Deletes the webhooks `ids` of `node_id` and their pending deliveries. Ids the
/// node does not have are skipped, so a retried delete succeeds.
pub async fn delete(store: &Store, node_id: &str, ids: &[i64]) -> Result<(), WebhookError> {
    store.read_barrier().await?;
    store
        .update("the node's webhooks", |store| {
            require_registered(store, node_id)?;
            let mut txn = TxnBuilder::new();
            let mut any = false;
            for &id in ids {
                let key = keys::webhook(node_id, id);
                let Some(version) = store.state().get(&key)?.map(|v| v.version) else {
                    continue;
                };
                any = true;
                txn = txn
                    .require_version(&key, version)
                    .delete_tagged(&key, Vec::<String>::new());
                for (k, _) in store
                    .state()
                    .scan(&keys::webhook_deliveries_of(node_id, id))?
                {
                    txn = txn.delete_tagged(k, Vec::<String>::new());
                }
            }
            Ok::<_, WebhookError>(if any {
                Attempt::Propose(txn.build(), ())
            } else {
                Attempt::Done(())
            })
        })
        .await?;
    Ok(())
}

/// Gives webhook `id` a new secret and returns it (shown this once). Events sent
/// from then on, pending ones included, are signed with it.
pub async fn rotate(store: &Store, node_id: &str, id: i64) -> Result<String, WebhookError> {
    store.read_barrier().await?;
    let secret = webhook_signature::new_secret();
    let key = keys::webhook(node_id, id);
    store
        .update("the webhook", |store| {
            require_registered(store, node_id)?;
            let (version, mut webhook) = store
                .get::<OutgoingWebhook>(&key)?
                .ok_or(WebhookError::NotFound(id))?;
            webhook.secret_sealed = store.seal(&key, secret.as_bytes())?;
            let txn = TxnBuilder::new()
                .require_version(&key, version)
                .put(&key, &webhook)
                .build();
            Ok::<_, WebhookError>(Attempt::Propose(txn, ()))
        })
        .await?;
    Ok(secret)
}

/// A pending delivery's body, as sealed in its record.
pub fn body(store: &Store, key: &str, delivery: &WebhookDelivery) -> Result<Vec<u8>, StoreError> {
    store.open_sealed(key, &delivery.body_sealed)
}
