//! The node's half of self-fencing: a thread that reads the agent's lease file
//! every 50 ms and ends the process the moment the deadline passes, without a
//! graceful stop (a stale copy must do nothing more, not even say goodbye to its
//! peers). A plain thread, so that a busy or stuck async runtime cannot delay it.

use std::{path::PathBuf, time::Duration};

use lnswarm_common::lease::{LeaseFile, EXIT_LEASE_EXPIRED};

/// How often the lease is checked (part of the failover margin; docs/DESIGN.md).
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Whether the lease holds now.
pub fn holds(path: &std::path::Path) -> bool {
    LeaseFile::new(path).remaining_ms() > 0
}

/// Starts the watch; it never returns control to the caller's process once the
/// lease has run out.
pub fn spawn(path: PathBuf) {
    std::thread::Builder::new()
        .name("lease-watch".into())
        .spawn(move || {
            let lease = LeaseFile::new(&path);
            loop {
                let left = lease.remaining_ms();
                if left == 0 {
                    tracing::error!(
                        lease = %path.display(),
                        "the agent no longer vouches for this node (its lease ran out); stopping at once"
                    );
                    std::process::exit(EXIT_LEASE_EXPIRED);
                }
                std::thread::sleep(CHECK_EVERY.min(Duration::from_millis(left)));
            }
        })
        .expect("starting the lease watch");
}
