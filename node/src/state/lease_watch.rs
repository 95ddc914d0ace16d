//! The node's half of self-fencing: a thread that reads the agent's lease file
//! every 50 ms. Shortly before the deadline ([`QUIESCE_BEFORE`]) it stops the node
//! cleanly in the background (peers disconnected, so no new channel updates, and
//! the ChannelManager written last) and then ends the process, even if the lease
//! was renewed meanwhile (its agent starts it again); at the deadline it ends the
//! process, finished or not: a stale copy must do nothing more. A plain thread, so that a
//! busy or stuck async runtime cannot delay it.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use lnswarm_common::lease::{LeaseFile, EXIT_LEASE_EXPIRED};

/// How often the lease is checked (part of the failover margin; docs/DESIGN.md).
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// How long before the deadline the clean stop starts, at most; and at most a
/// quarter of the longest lease seen (about the TTL). A lease has more than half
/// its TTL left just before each renewal (the grace multiplier is at least 2), so
/// only a lease that is really running out gets there.
pub const QUIESCE_BEFORE: Duration = Duration::from_millis(1_000);

/// What to run when the lease is about to run out (set once the node is built).
pub type Quiesce = Arc<OnceLock<Box<dyn Fn() + Send + Sync>>>;

/// Whether the lease holds now.
pub fn holds(path: &std::path::Path) -> bool {
    LeaseFile::new(path).remaining_ms() > 0
}

/// Starts the watch; it never returns control to the caller's process once the
/// lease has run out. Whatever is put in the returned slot runs (once, on a thread
/// of its own) when the lease is about to run out.
pub fn spawn(path: PathBuf) -> Quiesce {
    let quiesce: Quiesce = Arc::new(OnceLock::new());
    let slot = quiesce.clone();
    std::thread::Builder::new()
        .name("lease-watch".into())
        .spawn(move || {
            let lease = LeaseFile::new(&path);
            let mut quiescing = false;
            let mut longest = 0u64;
            loop {
                let left = lease.remaining_ms();
                longest = longest.max(left);
                let quiesce_at = (QUIESCE_BEFORE.as_millis() as u64).min(longest / 4);
                if left == 0 {
                    tracing::error!(
                        lease = %path.display(),
                        "the agent no longer vouches for this node (its lease ran out); stopping at once"
                    );
                    std::process::exit(EXIT_LEASE_EXPIRED);
                }
                if !quiescing && left <= quiesce_at && slot.get().is_some() {
                    quiescing = true;
                    tracing::warn!(left_ms = left, "the agent's lease is running out; stopping the node cleanly");
                    let slot = slot.clone();
                    std::thread::spawn(move || {
                        if let Some(stop) = slot.get() {
                            stop();
                        }
                        // A stopped node must not linger: if the agent renews the
                        // lease after all (an election ended in time), the process
                        // would serve its API with Lightning stopped, and an HTLC in
                        // flight would hang. Exit, so the agent starts it afresh.
                        tracing::warn!("the agent's lease ran low, so the node stopped cleanly; exiting (its agent starts it again once the lease holds)");
                        std::process::exit(EXIT_LEASE_EXPIRED);
                    });
                }
                std::thread::sleep(CHECK_EVERY.min(Duration::from_millis(left)));
            }
        })
        .expect("starting the lease watch");
    quiesce
}
