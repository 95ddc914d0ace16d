//! The agent's side of its hosted nodes' lease ([`lnswarm_common::lease`]): renewed
//! after each heartbeat the leader answers, counted from when that heartbeat was
//! sent, and only once this session's assignment set has been applied (so a
//! revived agent never extends the lease of a task it has not yet learnt it lost).
//! Hosted nodes start only while it holds, and the agent kills any that still run
//! once it lapses (a node frozen or hung past its own lease check).

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use lnswarm_common::lease::{now_boot_ms, LeaseFile};
use tracing::warn;

pub struct AgentLease {
    file: LeaseFile,
    /// The deadline last written (boot-clock milliseconds).
    until: AtomicU64,
}

impl AgentLease {
    /// The lease file in `nodes_root`. A deadline left by an earlier run is not
    /// trusted (this run holds no lease until it renews one), but it is left in
    /// the file until [`AgentLease::forget_earlier_run`]: node processes that run
    /// left behind still read it, and cutting it to zero would make them exit at
    /// once, mid-payment, instead of stopping cleanly when the worker asks them to.
    pub fn new(nodes_root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(nodes_root)?;
        let file = LeaseFile::new(nodes_root.join("lease"));
        Ok(AgentLease {
            file,
            until: AtomicU64::new(0),
        })
    }

    /// Clears the earlier run's deadline from the file, once the processes it
    /// left behind are stopped.
    pub fn forget_earlier_run(&self) -> std::io::Result<()> {
        if self.until.load(Ordering::Acquire) == 0 {
            self.file.renew(0)?;
        }
        Ok(())
    }

    pub fn file(&self) -> &Path {
        self.file.path()
    }

    /// Extends the lease to `sent_boot_ms + ttl` (never shortens it).
    pub fn renew(&self, sent_boot_ms: u64, ttl: Duration) {
        let until = sent_boot_ms + ttl.as_millis() as u64;
        if self.until.fetch_max(until, Ordering::AcqRel) < until {
            if let Err(e) = self.file.renew(until) {
                warn!(error = %e, "could not renew the hosted nodes' lease file");
            }
        }
    }

    /// Whether the lease holds now.
    pub fn holds(&self) -> bool {
        self.until.load(Ordering::Acquire) > now_boot_ms()
    }

    /// How long the lease holds from now, milliseconds (0 when it has lapsed).
    pub fn remaining_ms(&self) -> u64 {
        self.until
            .load(Ordering::Acquire)
            .saturating_sub(now_boot_ms())
    }

    /// Waits until the lease no longer holds.
    pub async fn lapsed(&self) {
        while self.holds() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the lease holds.
    pub async fn wait(&self) {
        while !self.holds() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
