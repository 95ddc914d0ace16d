//! The orchestrator: on the leader, reconciles what owners want (a hosted node
//! running) with what agents report, by creating and stopping tasks. It wakes on
//! every applied change and once a second (for backoff deadlines), and does nothing
//! on followers.
//!
//! A pass reads every hosted node, agent and task, so on a large cluster it is not
//! free; passes are spaced by at least [`SPACING`] times the last one's duration,
//! which keeps them to a fifth of a core however busy the store is.

mod hosted_nodes;

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::store::{watch::ALL, Store};

pub use hosted_nodes::reconcile;

/// The idle time after a pass, as a multiple of the pass's duration.
const SPACING: u32 = 4;

/// How long to wait after a pass of `took` before the next: enough for a burst of
/// changes to land, and [`SPACING`] times the pass, up to 5 s.
fn pause_after(took: Duration) -> Duration {
    (took * SPACING).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

pub fn spawn(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = store.state().watch().subscribe(ALL);
        let mut leadership = store.leadership();
        loop {
            let mut took = Duration::ZERO;
            if store.is_leader() {
                let started = Instant::now();
                if let Err(e) = reconcile(&store).await {
                    warn!(error = %e, "orchestrator pass failed");
                }
                took = started.elapsed();
                debug!(took_ms = took.as_millis() as u64, "orchestrator pass");
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = leadership.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            tokio::time::sleep(pause_after(took)).await;
        }
    })
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
