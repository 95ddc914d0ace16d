//! The orchestrator: on the leader, reconciles what owners want (a hosted node
//! running) with what agents report, by creating and stopping tasks. It wakes on
//! every applied change and once a second (for backoff deadlines), and does nothing
//! on followers.

mod hosted_nodes;

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;

use crate::store::{watch::ALL, Store};

pub use hosted_nodes::{node_tag, reconcile};

pub fn spawn(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = store.state().watch().subscribe(ALL);
        let mut leadership = store.leadership();
        loop {
            if store.is_leader() {
                if let Err(e) = reconcile(&store).await {
                    warn!(error = %e, "orchestrator pass failed");
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = leadership.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // Let a burst of changes land before the next pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}
