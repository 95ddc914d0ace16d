//! Prometheus metrics of a manager, served as text on `--metrics-listen` (with
//! `/healthz`). Counters and histograms are updated where things happen, through
//! one process-wide value (as Prometheus clients usually keep their default
//! registry); gauges that describe state (raft, tasks, hosted nodes, sessions,
//! certificate expiry) are read at scrape time. No owner data appears here:
//! hosted nodes are counted by state, never named with balances, peers or
//! invoices.

use std::sync::{Arc, LazyLock};

use lnswarm_common::{
    api::{HostedNode, HostedNodeState, Task, TaskState},
    tls::LiveIdentity,
};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::store::{keys, Store};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// What happens, counted as it happens.
pub struct Events {
    pub proposals: Family<Outcome, Counter>,
    pub proposal_seconds: Histogram,
    pub snapshots: Family<Kind, Counter>,
    pub heartbeats: Counter,
    pub expirations: Counter,
    pub node_moves: Family<Kind, Counter>,
    pub node_state_writes: Family<Outcome, Counter>,
    pub node_state_write_seconds: Histogram,
    pub webhook_deliveries: Family<Outcome, Counter>,
}

/// Counts one call under `outcome` and records how long it took since `started`.
pub fn record(
    calls: &Family<Outcome, Counter>,
    seconds: &Histogram,
    outcome: &'static str,
    started: std::time::Instant,
) {
    calls.get_or_create(&Outcome { outcome }).inc();
    seconds.observe(started.elapsed().as_secs_f64());
}

fn latency_buckets() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_25, 2.0, 15,
    ))
}

static EVENTS: LazyLock<Events> = LazyLock::new(|| Events {
    proposals: Family::default(),
    proposal_seconds: latency_buckets(),
    snapshots: Family::default(),
    heartbeats: Counter::default(),
    expirations: Counter::default(),
    node_moves: Family::default(),
    node_state_writes: Family::default(),
    node_state_write_seconds: latency_buckets(),
    webhook_deliveries: Family::default(),
});

/// The process's event counters.
pub fn events() -> &'static Events {
    &EVENTS
}

/// Renders every metric of this manager, reading state from `store`.
pub fn render(store: &Store, identity: &Arc<LiveIdentity>, live_sessions: usize) -> String {
    let mut registry = Registry::with_prefix("lnswarm_manager");
    let e = events();
    registry.register(
        "raft_proposals",
        "Store proposals by outcome",
        e.proposals.clone(),
    );
    registry.register(
        "raft_proposal_seconds",
        "Time from proposal to applied",
        e.proposal_seconds.clone(),
    );
    registry.register(
        "raft_snapshots",
        "Raft snapshots made, sent and installed",
        e.snapshots.clone(),
    );
    registry.register(
        "dispatcher_heartbeats",
        "Agent heartbeats answered",
        e.heartbeats.clone(),
    );
    registry.register(
        "dispatcher_expirations",
        "Agents marked DOWN after missing heartbeats",
        e.expirations.clone(),
    );
    registry.register(
        "hosted_node_moves",
        "Hosted nodes started elsewhere, by kind (failover, drain, move)",
        e.node_moves.clone(),
    );
    registry.register(
        "node_state_writes",
        "Hosted nodes' state writes by outcome",
        e.node_state_writes.clone(),
    );
    registry.register(
        "node_state_write_seconds",
        "Time to commit a hosted node's state write",
        e.node_state_write_seconds.clone(),
    );
    registry.register(
        "webhook_deliveries",
        "Webhook delivery attempts by outcome (delivered, retried, rejected, dropped)",
        e.webhook_deliveries.clone(),
    );

    let gauge = |v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        g
    };
    if let Some(raft) = store.raft() {
        let s = raft.status();
        registry.register("raft_term", "Current raft term", gauge(s.term as i64));
        registry.register(
            "raft_is_leader",
            "1 while this manager leads",
            gauge(s.is_leader as i64),
        );
        registry.register(
            "raft_has_leader",
            "1 while this manager knows a leader",
            gauge((s.leader_id != 0) as i64),
        );
        registry.register(
            "raft_commit_index",
            "Raft commit index",
            gauge(s.commit as i64),
        );
        registry.register(
            "raft_applied_index",
            "Index applied to the state machine",
            gauge(s.applied as i64),
        );
        registry.register(
            "raft_voters",
            "Voters in the quorum",
            gauge(s.voters.len() as i64),
        );
    }
    registry.register(
        "dispatcher_sessions",
        "Agent sessions open on this manager",
        gauge(live_sessions as i64),
    );
    let tasks: Family<StateLabel, Gauge> = Family::default();
    if let Ok(list) = store.list::<Task>(keys::TASKS) {
        for (_, t) in list {
            let state = TaskState::try_from(t.status.map(|s| s.state).unwrap_or(0))
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("TASK_STATE_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| "unknown".into());
            tasks.get_or_create(&StateLabel { state }).inc();
        }
    }
    registry.register("tasks", "Tasks by observed state", tasks);
    let nodes: Family<StateLabel, Gauge> = Family::default();
    if let Ok(list) = store.list::<HostedNode>(keys::HOSTED_NODES) {
        for (_, n) in list {
            let state = HostedNodeState::try_from(n.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("HOSTED_NODE_STATE_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| "unknown".into());
            nodes.get_or_create(&StateLabel { state }).inc();
        }
    }
    registry.register("hosted_nodes", "Hosted nodes by state", nodes);
    if let Ok((_, not_after)) = lnswarm_common::pki::validity_of(&identity.cert_pem()) {
        registry.register(
            "cert_expiry_timestamp_seconds",
            "When this manager's certificate expires (Unix time)",
            gauge(not_after),
        );
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}
