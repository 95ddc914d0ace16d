//! Idle hosted nodes are stopped until their owner schedules them again, freeing
//! their agent's slot. Only the node knows whether it is idle (no channels, no
//! pending payments, no owner call or event stream), so it reports how long it has
//! been; the managers compare that with the cluster's idle period (which may change
//! at any time) and, once it is reached, mark the node not wanted in one
//! transaction fenced by its lease. The orchestrator then stops it cleanly, as for
//! an export. A node with a channel never reports: it must keep watching the chain.

use lnswarm_common::api::HostedNode;

use super::fence::{self, FenceError};
use crate::{
    cluster::{self, ClusterError},
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<StoreError> for IdleError {
    fn from(e: StoreError) -> Self {
        IdleError::Fence(e.into())
    }
}

/// How an idle stop's message starts (the orchestrator keeps it while stopping).
pub const IDLE_MESSAGE: &str = "idle:";

/// The managers' answer to a report.
#[derive(Debug, PartialEq, Eq)]
pub enum Idle {
    /// Marked not wanted: the agent stops the node.
    Stopping,
    /// Not idle long enough: ask again after this many milliseconds.
    AskAgainAfter(u64),
}

/// Handles `node_id`'s report that it has been idle for `idle_for_ms`.
pub async fn report(
    store: &Store,
    node_id: &str,
    epoch: u64,
    idle_for_ms: u64,
) -> Result<Idle, IdleError> {
    let (_, record) = cluster::load(store)?;
    let period_ms = cluster::effective_settings(&record)
        .idle_stop_secs
        .saturating_mul(1000);
    if idle_for_ms < period_ms {
        fence::current_lease(store, node_id, epoch)?;
        return Ok(Idle::AskAgainAfter(period_ms - idle_for_ms));
    }
    let node_key = keys::hosted_node(node_id);
    let lease_key = keys::node_lease(node_id);
    let (idle, _) = store
        .update("the hosted node", |store| {
            let lease_version = fence::current_lease(store, node_id, epoch)?;
            let Some((version, mut node)) = store.get::<HostedNode>(&node_key)? else {
                return Err(FenceError::NoLease {
                    node: node_id.to_string(),
                }
                .into());
            };
            if !node.desired_running {
                return Ok(Attempt::Done(Idle::Stopping));
            }
            node.desired_running = false;
            node.message = format!(
                "{IDLE_MESSAGE} stopped after {} s with no channels, no pending payments and no owner calls; Schedule starts it again",
                idle_for_ms / 1000
            );
            let txn = TxnBuilder::new()
                .require_version(&lease_key, lease_version)
                .require_version(&node_key, version)
                .put(&node_key, &node)
                .build();
            Ok::<_, IdleError>(Attempt::Propose(txn, Idle::Stopping))
        })
        .await?;
    tracing::info!(node = %node_id, idle_s = idle_for_ms / 1000, "stopping an idle node");
    Ok(idle)
}
