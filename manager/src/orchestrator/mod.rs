//! The orchestrator: on the leader, reconciles what owners want (a hosted node
//! running) with what agents report, by creating and stopping tasks. It wakes on
//! every applied change and once a second (for backoff deadlines). The manager runs
//! it only while it leads.
//!
//! A pass reads every hosted node, agent and task, so on a large cluster it is not
//! free; passes are spaced by at least [`SPACING`] times the last one's duration,
//! which keeps them to a fifth of a core however busy the store is.

mod hosted_nodes;
pub mod upgrades;

use std::time::{Duration, Instant};

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::{watch::ALL, Store};

pub use hosted_nodes::{failover_margin, reconcile, Lost, ReconcileError};

/// The idle time after a pass, as a multiple of the pass's duration.
const SPACING: u32 = 4;

/// How long to wait after a pass of `took` before the next: enough for a burst of
/// changes to land, and [`SPACING`] times the pass, up to 5 s.
fn pause_after(took: Duration) -> Duration {
    (took * SPACING).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

/// Reconciles until `stop` fires (only the manager's leader lifecycle runs this),
/// counting its passes in `passes`.
pub async fn run(store: Store, stop: CancellationToken, passes: Arc<AtomicU64>) {
    let mut changes = store.state().watch().subscribe(ALL);
    // Kept across passes (and dropped when this manager stops leading).
    let mut lost = Lost::default();
    while !stop.is_cancelled() {
        let started = Instant::now();
        passes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = reconcile(&store, &mut lost).await {
            warn!(error = %e, "orchestrator pass failed");
        }
        let took = started.elapsed();
        debug!(took_ms = took.as_millis() as u64, "orchestrator pass");
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(pause_after(took)) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_spaced_by_their_own_cost() {
        let ms = Duration::from_millis;
        // Small clusters: the burst window alone.
        assert_eq!(pause_after(Duration::ZERO), ms(20));
        assert_eq!(pause_after(ms(2)), ms(20));
        // Large ones: four times the pass, so at most a fifth of a core...
        assert_eq!(pause_after(ms(100)), ms(400));
        // ...but a change is never left waiting for more than 5 s.
        assert_eq!(pause_after(ms(3_000)), ms(5_000));
    }
}
