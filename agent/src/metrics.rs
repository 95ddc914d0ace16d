//! Prometheus metrics of an agent, served with `/healthz` on `--health-listen`:
//! its task processes (hosted nodes), their restarts and resident memory, and its
//! lease and certificate. Restarts are counted as they happen; the rest is read at
//! scrape time.

use std::sync::{Arc, LazyLock};

use lnswarm_common::{api::TaskState, tls::LiveIdentity};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::{lease::AgentLease, worker::Worker};

static RESTARTS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Counts one restart of a crashed task process.
pub fn count_restart() {
    RESTARTS.inc();
}

/// Resident memory of `pid` in bytes, from /proc (0 if it is gone).
fn rss_bytes(pid: u32) -> u64 {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

pub fn render(worker: &Worker, lease: &AgentLease, identity: &Arc<LiveIdentity>) -> String {
    let mut registry = Registry::with_prefix("lnswarm_agent");
    let gauge = |v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        g
    };
    let pids: Vec<u32> = worker
        .board()
        .all()
        .into_iter()
        .filter(|(_, s)| s.state == TaskState::Running as i32 && s.pid > 0)
        .map(|(_, s)| s.pid)
        .collect();
    registry.register(
        "task_processes",
        "Task processes running (hosted nodes)",
        gauge(pids.len() as i64),
    );
    registry.register(
        "task_resident_bytes",
        "Resident memory of the running task processes",
        gauge(pids.iter().map(|p| rss_bytes(*p)).sum::<u64>() as i64),
    );
    registry.register(
        "task_restarts",
        "Restarts of crashed task processes",
        RESTARTS.clone(),
    );
    registry.register(
        "lease_remaining_seconds",
        "How long the managers vouch for this agent from now",
        gauge((lease.remaining_ms() / 1000) as i64),
    );
    if let Ok((_, not_after)) = lnswarm_common::pki::validity_of(&identity.cert_pem()) {
        registry.register(
            "cert_expiry_timestamp_seconds",
            "When this agent's certificate expires (Unix time)",
            gauge(not_after),
        );
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}
