//! The node's half of stopping idle nodes: it watches whether it is idle (no
//! channels, no pending payments, no owner call and no event stream) and, after
//! [`FIRST_REPORT`] of that, tells the managers how long it has been. They compare
//! it with the cluster's idle period and either stop it (its agent then sends
//! SIGTERM) or say when to ask again. Any activity starts the count over. A node
//! with a channel never reports: it must keep watching the chain for its peer.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use ldk_node::{payment::PaymentStatus, Node};
use lnswarm_common::{api, ids::now_unix_ms};
use tokio::sync::broadcast;

use crate::{errors::blocking, state::ReplicatedStore};

/// How often the node looks at itself.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Idle this long before the first report (the cluster's floor for the period).
const FIRST_REPORT: Duration = Duration::from_secs(5);

/// When an owner last called the Node API (Unix ms), stamped by its interceptor.
#[derive(Clone, Default)]
pub struct LastCall(Arc<AtomicI64>);

impl LastCall {
    pub fn stamp(&self) {
        self.0.store(now_unix_ms(), Ordering::Relaxed);
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whether the node has anything that needs it running now.
async fn busy(node: &Arc<Node>, events: &broadcast::Sender<api::NodeEvent>) -> bool {
    if events.receiver_count() > 0 {
        return true;
    }
    let node = node.clone();
    blocking(move || {
        !node.list_channels().is_empty()
            || node
                .list_payments_with_filter(|p| p.status == PaymentStatus::Pending)
                .into_iter()
                .next()
                .is_some()
    })
    .await
    // If the check cannot run, assume busy: stopping is the step that needs care.
    .unwrap_or(true)
}

/// Watches until the process ends.
pub async fn watch(
    node: Arc<Node>,
    store: Arc<ReplicatedStore>,
    events: broadcast::Sender<api::NodeEvent>,
    last_call: LastCall,
) {
    let mut idle_since = now_unix_ms();
    let mut next_report = 0i64;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let now = now_unix_ms();
        if busy(&node, &events).await {
            idle_since = now;
            next_report = 0;
            continue;
        }
        idle_since = idle_since.max(last_call.get());
        let idle_for = (now - idle_since).max(0) as u64;
        if idle_for < FIRST_REPORT.as_millis() as u64 || now < next_report {
            continue;
        }
        match store.report_idle(idle_for).await {
            Ok(r) if r.stopping => {
                tracing::info!(
                    idle_s = idle_for / 1000,
                    "idle: the managers are stopping this node"
                );
                return;
            }
            Ok(r) => next_report = now + r.ask_again_after_ms.max(1000) as i64,
            Err(e) => {
                tracing::debug!(error = %e, "could not report idleness");
                next_report = now + 10_000;
            }
        }
    }
}
