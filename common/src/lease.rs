//! The lease an agent holds for the hosted nodes it runs, as a file the agent
//! renews and each node process watches (shared by `lnswarm-agent` and
//! `lnswarm-node`).
//!
//! The agent renews it after each heartbeat the leader answered, to the heartbeat's
//! send time plus the TTL; the leader cannot write the agent DOWN, and so cannot
//! start its nodes elsewhere, before that. A node stops itself once the deadline
//! passes, so a frozen or dead agent's nodes stop before their replacements start
//! (the timing argument is in docs/DESIGN.md, "Fencing").
//!
//! Deadlines are on `CLOCK_BOOTTIME`: one clock for every process on the host that
//! keeps counting through a suspend (a suspended host's lease must not look fresh).

use std::{io::Write, path::PathBuf};

/// The exit status of a hosted node that stopped because a newer copy of it holds
/// the lease (its store refused a write): its agent must not restart it.
pub const EXIT_FENCED: i32 = 75;

/// The exit status of a hosted node whose agent's lease ran out: its agent may
/// start it again once the lease holds again.
pub const EXIT_LEASE_EXPIRED: i32 = 76;

/// Milliseconds on the host's boot clock.
pub fn now_boot_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill; CLOCK_BOOTTIME exists on
    // every Linux this runs on, and the call only writes `t`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME)");
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// The lease file of an agent's nodes.
#[derive(Debug, Clone)]
pub struct LeaseFile {
    path: PathBuf,
}

impl LeaseFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LeaseFile { path: path.into() }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes the deadline (boot-clock milliseconds), atomically.
    pub fn renew(&self, until_boot_ms: u64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{until_boot_ms}")?;
        drop(f);
        std::fs::rename(tmp, &self.path)
    }

    /// The deadline, if the file holds one.
    pub fn deadline(&self) -> Option<u64> {
        std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Milliseconds the lease has left (zero when it ran out or there is none).
    pub fn remaining_ms(&self) -> u64 {
        self.deadline()
            .map_or(0, |d| d.saturating_sub(now_boot_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_out_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let lease = LeaseFile::new(dir.path().join("lease"));
        assert_eq!(lease.remaining_ms(), 0, "no file, no lease");
        lease.renew(now_boot_ms() + 60_000).unwrap();
        assert!(lease.remaining_ms() > 59_000);
        lease.renew(now_boot_ms().saturating_sub(1)).unwrap();
        assert_eq!(lease.remaining_ms(), 0);
    }
}
