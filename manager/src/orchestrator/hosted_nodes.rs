//! Desired vs actual for hosted Lightning nodes. A node's state is in the
//! replicated store, so it may run on any READY agent:
//! - a node the owner wants running gets a task on the agent it last ran on when
//!   that agent can take it, and otherwise where placement picks;
//! - a new task is created only when the node has no live task, in a transaction
//!   that requires the node record and its lease unchanged and moves the lease
//!   epoch forward, so two orchestrators (an old and a new leader) can never both
//!   start one, and the previous task's writes are fenced from then on;
//! - a task on an agent that is DOWN counts as gone only once the agent's lease has
//!   certainly run out (see [`Lost`]); then the node starts elsewhere (failover);
//! - on a draining agent, or when an operator moves the node, its task is stopped
//!   cleanly first, and the node starts elsewhere once it has stopped;
//! - a task that failed is replaced after a backoff;
//! - a node being upgraded (`upgrade_task`, see [`super::upgrades`]) has that task
//!   stopped cleanly, then starts again, where it ran when it can, on the
//!   `lnswarm-node` its agent ships now.
//!
//! Each node is judged first ([`judge`]: a [`Verdict`] from the node, its tasks,
//! their agents and the clocks, with no store access), then the verdict is applied
//! as one transaction ([`apply`]).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lnswarm_common::{
    api::{
        task_spec::Runtime, Agent, AgentState, Availability, CertificateRecord, HostedNode,
        HostedNodeSpec, HostedNodeState, NodeTlsSecret, Secret, Task, TaskSpec, TaskState,
    },
    ids::now_unix_ms,
    pki::{new_key_and_csr, Role},
};
use prost::Message;
use tracing::info;

use crate::{
    ca::{sign_leaf, IssueError},
    cluster::{self, ClusterError},
    dispatcher::{DispatcherConfig, HeartbeatTiming},
    node_state::fence::NextLease,
    placement::{self, agent_state, is_live, Load},
    store::{keys, secrets, Store, StoreError, TxnBuilder},
};

/// Why a pass could not finish (the next pass tries again).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("issuing a node certificate: {0}")]
    Issue(#[from] IssueError),
    #[error("making a node key: {0}")]
    Pki(#[from] lnswarm_common::pki::PkiError),
}

/// Whether an agent's tasks count as running where their status says. UNKNOWN is
/// the grace after a leader change, not a verdict: the agent is most likely still
/// serving and finding the new leader, so its nodes are not reported unavailable.
fn holds_its_tasks(agent: &Agent) -> bool {
    matches!(agent_state(agent), AgentState::Ready | AgentState::Unknown)
}

/// An UNKNOWN agent that would take work once it reports in.
fn may_return(agent: &Agent) -> bool {
    agent_state(agent) == AgentState::Unknown && agent.availability == Availability::Active as i32
}

fn restart_backoff_ms(restarts: u32) -> i64 {
    (500i64 << restarts.min(6)).min(30_000)
}

/// The wait, beyond the TTL, before a silent agent's nodes start elsewhere: it
/// covers clock-rate drift between the agent and this manager (up to 2.5 % each
/// way), the node's 50 ms lease check, and its exit. See docs/DESIGN.md, "Fencing".
pub fn failover_margin(ttl: Duration) -> Duration {
    Duration::from_millis(500) + ttl / 20
}

/// What this leader knows of the lease of the nodes on a task's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lease {
    /// The agent is READY or UNKNOWN: it renews its nodes' leases.
    Renewed,
    /// The agent is DOWN or DISCONNECTED: the lease has certainly run out once this
    /// long has passed.
    Expiring(Duration),
    /// The agent left the cluster, or the lease has certainly run out: the task is
    /// gone, and the node may start elsewhere.
    Expired,
}

/// When this leader first saw each agent DOWN or DISCONNECTED, on its own monotonic
/// clock: a new leader starts counting afresh, so wall clocks never enter into it.
#[derive(Default)]
pub struct Lost {
    seen: HashMap<String, (AgentState, Instant)>,
}

impl Lost {
    /// Where the lease of every node on `agent` stands at `now`.
    /// A DOWN agent was written so a TTL after its last heartbeat, so the margin
    /// suffices; a DISCONNECTED one left at once and gets the TTL too.
    fn lease(&mut self, agent: &Agent, ttl: Duration, now: Instant) -> Lease {
        let state = agent_state(agent);
        let wait = match state {
            AgentState::Down => failover_margin(ttl),
            AgentState::Disconnected => ttl + failover_margin(ttl),
            _ => {
                self.seen.remove(&agent.id);
                return Lease::Renewed;
            }
        };
        let entry = self.seen.entry(agent.id.clone()).or_insert((state, now));
        if entry.0 != state {
            *entry = (state, now);
        }
        let waited = now.saturating_duration_since(entry.1);
        if waited >= wait {
            Lease::Expired
        } else {
            Lease::Expiring(wait - waited)
        }
    }
}

/// One pass over every hosted node. Agents and tasks are read only when there is a
/// node to reconcile: a cluster's agents can far outnumber its hosted nodes.
pub async fn reconcile(store: &Store, lost: &mut Lost) -> Result<(), ReconcileError> {
    let nodes = store.list::<HostedNode>(keys::HOSTED_NODES)?;
    if nodes.is_empty() {
        // A rolling upgrade of no nodes is over.
        super::upgrades::pace(store, &nodes, &[]).await?;
        return Ok(());
    }
    let (_, record) = cluster::load(store)?;
    let ttl =
        HeartbeatTiming::from_settings(record.settings.as_ref(), &DispatcherConfig::default())
            .ttl();
    // Off the runtime's threads: in a large cluster these take milliseconds.
    let (agent_list, tasks) = store.read_off_thread(placement::agents_and_tasks).await?;
    // A rolling upgrade's next step; the nodes it marked are read again.
    let nodes = if super::upgrades::pace(store, &nodes, &agent_list).await? {
        store.list::<HostedNode>(keys::HOSTED_NODES)?
    } else {
        nodes
    };
    let mut by_node: HashMap<&str, Vec<&Task>> = HashMap::new();
    for t in &tasks {
        if !t.node_id.is_empty() {
            by_node.entry(t.node_id.as_str()).or_default().push(t);
        }
    }
    let mut agents = Agents::new(&agent_list, &tasks, ttl);
    let now = Instant::now();
    for (version, node) in nodes {
        let node_tasks = by_node.remove(node.node_id.as_str()).unwrap_or_default();
        let now_ms = now_unix_ms();
        let plan = judge(&node, &node_tasks, &agents, lost, now, now_ms);
        if let Some(txn) = apply(store, version, &node, plan, &mut agents, now_ms)? {
            // A failed check (someone changed the node meanwhile) is retried next pass.
            store.propose(txn.build()).await?;
        }
    }
    Ok(())
}

/// What one pass knows about the agents, indexed once for all its nodes.
struct Agents<'a> {
    all: &'a [Agent],
    by_id: HashMap<&'a str, &'a Agent>,
    /// Live tasks per agent, including those this pass started.
    load: Load,
    ttl: Duration,
}

impl<'a> Agents<'a> {
    fn new(all: &'a [Agent], tasks: &[Task], ttl: Duration) -> Self {
        Agents {
            all,
            by_id: all.iter().map(|a| (a.id.as_str(), a)).collect(),
            load: Load::of(tasks),
            ttl,
        }
    }

    /// Where the lease of `t`'s node stands: gone with its agent if that left the
    /// cluster, else as [`Lost::lease`] says.
    fn lease(&self, t: &Task, lost: &mut Lost, now: Instant) -> Lease {
        match self.by_id.get(t.agent_id.as_str()) {
            None => Lease::Expired,
            Some(a) => lost.lease(a, self.ttl, now),
        }
    }

    /// Where to start a node that last ran on `previous` (if anywhere): there, when
    /// it can take it and the node is not leaving it; `to` when an operator named
    /// an agent; else where placement picks among the others.
    fn target(&self, previous: &str, leaving: bool, to: &str) -> Result<String, String> {
        if !to.is_empty() && to != "*" {
            let a = self
                .by_id
                .get(to)
                .ok_or_else(|| format!("agent {to} is not in the cluster"))?;
            return match placement::unfit(a, self.load.on(to)) {
                Some(why) => Err(why),
                None => Ok(to.to_string()),
            };
        }
        if !leaving {
            if let Some(a) = self.by_id.get(previous) {
                if placement::unfit(a, self.load.on(previous)).is_none() {
                    return Ok(previous.to_string());
                }
            }
        }
        // Placement's pick among the others (all of them for a node never placed).
        placement::choose_among(self.all.iter().filter(|a| a.id != previous), &self.load)
    }
}

fn task_state(t: &Task) -> i32 {
    t.status.as_ref().map(|s| s.state).unwrap_or_default()
}

/// What a pass decides for one node from its record, its tasks and their agents,
/// before anything is written; [`apply`] turns it into the node's next record and
/// task changes.
#[derive(Debug, PartialEq)]
enum Verdict<'t> {
    /// The node was exported: this cluster leaves it (and its tasks) alone.
    Exported,
    /// The owner does not want it running: stop its live tasks.
    Stop { live: Vec<&'t Task> },
    /// Its agent is draining, or an operator moves it: stop its live tasks here
    /// first; it starts elsewhere once they have stopped (never two copies, and no
    /// write is cut off mid-flight).
    Move { live: Vec<&'t Task>, draining: bool },
    /// It is being upgraded: stop the task it is leaving, cleanly, as for a move;
    /// it starts again once that has stopped.
    Upgrade { live: Vec<&'t Task> },
    /// It serves from `task`.
    Running { task: &'t Task },
    /// `task` is RUNNING with no endpoint: states never go back, so a process
    /// restarting after a crash stays RUNNING until it serves again.
    Restarting { task: &'t Task },
    /// A live task has not started yet, on an agent that holds its tasks.
    Starting,
    /// Its agent is not answering; `task` is its RUNNING task, if any; it fails over
    /// in `failover_in` when its agent's lease is running out.
    Unavailable {
        task: Option<&'t Task>,
        failover_in: Option<Duration>,
    },
    /// No live task and no agent can take it, but some agents are UNKNOWN (a new
    /// leader): wait for them rather than give up on it.
    WaitForAgents { why: String },
    /// No live task and no agent can take it.
    NoAgent { why: String },
    /// Its last task failed: start again after a backoff.
    Backoff,
    /// Backing off after a failure; a later pass starts it.
    BackingOff,
    /// Start a task on `agent`.
    Start { agent: String },
    /// Its agent's lease ran out (see [`Plan::lost`]): start a task on `agent`,
    /// another one.
    FailOver { agent: String },
}

/// A [`Verdict`] with the task clean-up that goes with it.
#[derive(Debug, PartialEq)]
struct Plan<'t> {
    /// Live tasks on agents whose lease has run out: forgotten (an agent that comes
    /// back is sent a set without them, and stops what it left behind).
    lost: Vec<&'t Task>,
    verdict: Verdict<'t>,
    /// Finished tasks that are not the node's latest, or were stopped on purpose:
    /// forgotten.
    finished: Vec<&'t Task>,
}

/// The plan for `node` at `now` (this leader's clock, for leases) and `now_ms` (the
/// wall clock, for restart backoff). `lost` remembers when agents were first seen
/// silent; nothing else changes.
fn judge<'t>(
    node: &HostedNode,
    node_tasks: &[&'t Task],
    agents: &Agents<'_>,
    lost: &mut Lost,
    now: Instant,
    now_ms: i64,
) -> Plan<'t> {
    if node.state == HostedNodeState::Exported as i32 {
        return Plan {
            lost: vec![],
            verdict: Verdict::Exported,
            finished: vec![],
        };
    }
    let leases: Vec<(&Task, Lease)> = node_tasks
        .iter()
        .copied()
        .filter(|t| is_live(t))
        .map(|t| (t, agents.lease(t, lost, now)))
        .collect();
    decide(node, node_tasks, &leases, agents, now_ms)
}

/// [`judge`] once the lease of each live task is known: a pure function.
fn decide<'t>(
    node: &HostedNode,
    node_tasks: &[&'t Task],
    leases: &[(&'t Task, Lease)],
    agents: &Agents<'_>,
    now_ms: i64,
) -> Plan<'t> {
    let lost: Vec<&Task> = leases
        .iter()
        .filter(|(_, l)| *l == Lease::Expired)
        .map(|(t, _)| *t)
        .collect();
    let live: Vec<&Task> = leases
        .iter()
        .filter(|(_, l)| *l != Lease::Expired)
        .map(|(t, _)| *t)
        .collect();
    // With several live tasks on silent agents, the last one's wait is reported.
    let failover_in = leases.iter().rev().find_map(|(_, l)| match l {
        Lease::Expiring(wait) => Some(*wait),
        _ => None,
    });
    let failed_over = !lost.is_empty();
    let agent = agents.by_id.get(node.agent_id.as_str()).copied();
    let draining = agent.is_some_and(|a| a.availability == Availability::Drain as i32);
    let leaving = draining || !node.move_to.is_empty();
    let agent_up = agent.is_some_and(holds_its_tasks);
    let upgrading = !node.upgrade_task.is_empty();

    let verdict = if !node.desired_running {
        Verdict::Stop { live }
    } else if leaving && !live.is_empty() {
        Verdict::Move { live, draining }
    } else if upgrading && agent_up && live.iter().any(|t| t.id == node.upgrade_task) {
        Verdict::Upgrade { live }
    } else if let Some(&task) = live
        .iter()
        .find(|t| task_state(t) == TaskState::Running as i32)
    {
        let no_endpoint = task.status.as_ref().is_none_or(|s| s.endpoint.is_empty());
        match (agent_up, no_endpoint) {
            (true, true) => Verdict::Restarting { task },
            (true, false) => Verdict::Running { task },
            (false, _) => Verdict::Unavailable {
                task: Some(task),
                failover_in,
            },
        }
    } else if !live.is_empty() {
        // Starting, or stuck on an agent that stopped answering.
        if agent_up {
            Verdict::Starting
        } else {
            Verdict::Unavailable {
                task: None,
                failover_in,
            }
        }
    } else {
        // No live task: start one.
        let target = agents.target(&node.agent_id, leaving || failed_over, &node.move_to);
        let previous_failed = !failed_over
            && node_tasks
                .iter()
                .filter(|t| agents.by_id.contains_key(t.agent_id.as_str()))
                .max_by_key(|t| t.created_unix_ms)
                .is_some_and(|t| {
                    task_state(t) >= TaskState::Failed as i32
                        || (task_state(t) == TaskState::Complete as i32
                            && !leaving
                            && t.id != node.upgrade_task)
                });
        match target {
            // Agents are UNKNOWN until they find a new leader.
            Err(why) if agents.all.iter().any(may_return) => Verdict::WaitForAgents { why },
            Err(why) => Verdict::NoAgent { why },
            Ok(_) if previous_failed && node.next_start_unix_ms == 0 => Verdict::Backoff,
            Ok(_) if now_ms < node.next_start_unix_ms => Verdict::BackingOff,
            Ok(agent) if failed_over => Verdict::FailOver { agent },
            Ok(agent) => Verdict::Start { agent },
        }
    };

    let newest = node_tasks.iter().map(|t| t.created_unix_ms).max();
    let finished = node_tasks
        .iter()
        .copied()
        .filter(|t| !is_live(t))
        .filter(|t| {
            Some(t.created_unix_ms) != newest || t.desired_state == TaskState::Shutdown as i32
        })
        .collect();
    Plan {
        lost,
        verdict,
        finished,
    }
}

/// The transaction that carries out `plan` for `node` (read at `version`), or
/// `None` when nothing changes. A start places the task in `agents`' load, so the
/// pass's later nodes spread out.
fn apply(
    store: &Store,
    version: u64,
    node: &HostedNode,
    plan: Plan<'_>,
    agents: &mut Agents<'_>,
    now: i64,
) -> Result<Option<TxnBuilder>, ReconcileError> {
    if plan.verdict == Verdict::Exported {
        return Ok(None);
    }
    let key = keys::hosted_node(&node.node_id);
    let mut next = node.clone();
    let mut txn = TxnBuilder::new().require_version(&key, version);
    let mut changed_tasks = false;
    for t in &plan.lost {
        info!(node = %node.node_id, task = %t.id, agent = %t.agent_id, "the node's agent is gone and its lease has run out; moving the node");
        txn = txn.delete_tagged(keys::task(&t.id), [keys::agent_tag(&t.agent_id)]);
        changed_tasks = true;
    }
    // Only a running node has an address.
    if !matches!(plan.verdict, Verdict::Running { .. }) {
        next.grpc_uri.clear();
        next.lightning_addr.clear();
    }
    // A start on another agent than the last one is a failover, or a move (drain
    // or operator).
    let moved = match &plan.verdict {
        Verdict::FailOver { .. } => Some("failover"),
        Verdict::Start { agent } if !node.agent_id.is_empty() && &node.agent_id != agent => {
            Some("move")
        }
        _ => None,
    };
    if let Some(kind) = moved {
        crate::metrics::events()
            .node_moves
            .get_or_create(&crate::metrics::Kind { kind })
            .inc();
    }
    match plan.verdict {
        Verdict::Exported => unreachable!("returned above"),
        Verdict::Stop { live } => {
            txn = stop_tasks(txn, &live, &mut changed_tasks);
            next.move_to.clear();
            // It starts on the agent's current version whenever it starts again.
            next.upgrade_task.clear();
            if node.state == HostedNodeState::Exporting as i32 {
                // ExportNode waits for its tasks to stop, then finishes the export.
                next.message = if live.is_empty() {
                    "exporting: stopped"
                } else {
                    "exporting: stopping the node"
                }
                .into();
            } else if node.state == HostedNodeState::Registered as i32 && live.is_empty() {
                // Never scheduled: it stays as registered.
                next.state = HostedNodeState::Registered as i32;
                next.message.clear();
            } else if node
                .message
                .starts_with(crate::node_state::idle::IDLE_MESSAGE)
            {
                // Stopped for being idle: the message says so until Schedule.
                next.state = HostedNodeState::Stopped as i32;
            } else {
                next.state = HostedNodeState::Stopped as i32;
                next.message = if live.is_empty() {
                    "stopped"
                } else {
                    "stopping"
                }
                .into();
            }
        }
        Verdict::Move { live, draining } => {
            txn = stop_tasks(txn, &live, &mut changed_tasks);
            next.state = HostedNodeState::Scheduled as i32;
            next.message = if draining {
                format!("moving: agent {} is draining", node.agent_id)
            } else {
                format!("moving off agent {}", node.agent_id)
            };
        }
        Verdict::Upgrade { live } => {
            txn = stop_tasks(txn, &live, &mut changed_tasks);
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!(
                "upgrading: stopping lnswarm-node {} on agent {}",
                node.running_version, node.agent_id
            );
        }
        Verdict::Running { task } => {
            let status = task.status.clone().unwrap_or_default();
            if !status.node_version.is_empty() {
                next.running_version = status.node_version.clone();
            }
            if task.id != node.upgrade_task {
                // Serving from its next task: the upgrade is done.
                next.upgrade_task.clear();
            }
            next.state = HostedNodeState::Running as i32;
            next.grpc_uri = status.endpoint;
            next.lightning_addr = status.lightning_addr;
            next.message.clear();
            next.restarts = 0;
            next.next_start_unix_ms = 0;
            next.task_id = task.id.clone();
        }
        Verdict::Restarting { task } => {
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!(
                "restarting on agent {}: {}",
                node.agent_id,
                task.status
                    .as_ref()
                    .map(|s| s.message.as_str())
                    .unwrap_or("")
            );
            next.task_id = task.id.clone();
        }
        Verdict::Starting => {
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!("starting on agent {}", node.agent_id);
        }
        Verdict::Unavailable { task, failover_in } => {
            next.state = HostedNodeState::Unavailable as i32;
            next.message = unavailable_message(&node.agent_id, failover_in);
            if let Some(t) = task {
                next.task_id = t.id.clone();
            }
        }
        Verdict::WaitForAgents { why } => {
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!("waiting for agents to report to the new leader ({why})");
        }
        Verdict::NoAgent { why } => {
            next.state = HostedNodeState::Unavailable as i32;
            next.message = format!("no agent can run it now: {why}");
        }
        Verdict::Backoff => {
            next.restarts = node.restarts + 1;
            next.next_start_unix_ms = now + restart_backoff_ms(node.restarts);
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!("restarting after a failure (attempt {})", next.restarts);
        }
        Verdict::BackingOff => {}
        Verdict::Start { agent } | Verdict::FailOver { agent } => {
            let task_id;
            (txn, task_id) = start_task(store, txn, node, &agent, agents, now)?;
            changed_tasks = true;
            next.agent_id = agent.clone();
            next.task_id = task_id;
            next.next_start_unix_ms = 0;
            next.move_to.clear();
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!("starting on agent {agent}");
        }
    }
    for t in &plan.finished {
        txn = txn.delete_tagged(keys::task(&t.id), [keys::agent_tag(&t.agent_id)]);
        changed_tasks = true;
    }

    if next.state != node.state {
        next.since_unix_ms = now;
    }
    if next == *node && !changed_tasks {
        return Ok(None);
    }
    Ok(Some(txn.put_tagged(
        &key,
        &next,
        [keys::node_tag(&node.node_id)],
    )))
}

/// Adds a new task for `node` on `agent_id` to `txn`, with its secrets, moving the
/// node's lease to the next epoch in the same transaction (which requires the lease
/// unchanged, so two leaders never both start one). Returns the task's id.
fn start_task(
    store: &Store,
    mut txn: TxnBuilder,
    node: &HostedNode,
    agent_id: &str,
    agents: &mut Agents<'_>,
    now: i64,
) -> Result<(TxnBuilder, String), ReconcileError> {
    let host = agents
        .by_id
        .get(agent_id)
        .and_then(|a| a.description.as_ref())
        .map(|d| d.advertised_address.clone());
    let lease = NextLease::read(store, &node.node_id)?;
    let epoch = lease.epoch;
    let (task, secret_ops, cert) = new_task(store, node, agent_id, host, epoch)?;
    agents.load.add(agent_id);
    // Recorded like every issued certificate: a root rotation reads which root
    // each running node's certificate comes from.
    txn = txn.put(keys::certificate(&node.node_id), &cert);
    for secret in secret_ops {
        txn = secrets::put(store, txn, &secret, [keys::agent_tag(agent_id)])?;
    }
    txn = lease.grant(txn, &task.id, agent_id, now);
    txn = txn.require_absent(keys::task(&task.id)).put_tagged(
        keys::task(&task.id),
        &task,
        [keys::agent_tag(agent_id)],
    );
    info!(node = %node.node_id, agent = %agent_id, task = %task.id, epoch, "starting hosted node");
    Ok((txn, task.id))
}

/// Asks every task of `live` that should run to shut down.
fn stop_tasks(mut txn: TxnBuilder, live: &[&Task], changed: &mut bool) -> TxnBuilder {
    for t in live
        .iter()
        .filter(|t| t.desired_state == TaskState::Running as i32)
    {
        let mut t = (*t).clone();
        t.desired_state = TaskState::Shutdown as i32;
        txn = txn.put_tagged(keys::task(&t.id), &t, [keys::agent_tag(&t.agent_id)]);
        *changed = true;
    }
    txn
}

fn unavailable_message(agent_id: &str, failover_in: Option<Duration>) -> String {
    match failover_in {
        Some(wait) => format!(
            "its agent {agent_id} is not answering; the node moves to another agent once its lease has run out (in {:.1} s)",
            wait.as_secs_f64()
        ),
        None => format!("its agent {agent_id} is not answering"),
    }
}

/// A task for `node` on `agent_id`, and the secret writes it needs (its TLS
/// certificate; the seed secret already exists from registration). `host` is the
/// agent's advertised address, which the node's certificate names.
fn new_task(
    store: &Store,
    node: &HostedNode,
    agent_id: &str,
    host: Option<String>,
    lease_epoch: u64,
) -> Result<(Task, Vec<Secret>, CertificateRecord), ReconcileError> {
    let (_, record) = cluster::load(store)?;
    let settings = cluster::effective_settings(&record);
    let host: Vec<std::net::IpAddr> = host
        .as_deref()
        .and_then(lnswarm_common::pki::ip_of_address)
        .into_iter()
        .collect();
    let key = new_key_and_csr(&node.node_id, Some(Role::Node))?;
    let cert = sign_leaf(store, &key.csr_pem, Role::Node, &node.node_id, &host)?;
    let tls = Secret {
        id: keys::tls_secret_id(&node.node_id),
        version: None,
        data: NodeTlsSecret {
            cert_pem: cert.cert_pem.clone(),
            key_pem: key.key_pem,
        }
        .encode_to_vec(),
    };
    let seed_id = keys::seed_secret_id(&node.node_id);
    let task = placement::assigned_task(
        TaskSpec {
            runtime: Some(Runtime::HostedNode(HostedNodeSpec {
                node_id: node.node_id.clone(),
                network: node.network.clone(),
                seed_secret_id: seed_id.clone(),
                chain_source: settings.chain_source,
                tls_secret_id: tls.id.clone(),
                lease_epoch,
            })),
            secret_ids: vec![seed_id, tls.id.clone()],
        },
        agent_id,
        &node.node_id,
    );
    Ok((task, vec![tls], cert))
}

#[cfg(test)]
mod tests {
    use lnswarm_common::api::{AgentStatus, TaskStatus};

    use super::*;

    const TTL: Duration = Duration::from_secs(3);
    const MS: Duration = Duration::from_millis(1);

    fn agent(id: &str, state: AgentState) -> Agent {
        Agent {
            id: id.into(),
            status: Some(AgentStatus {
                state: state as i32,
                ..Default::default()
            }),
            availability: Availability::Active as i32,
            ..Default::default()
        }
    }

    fn task(id: &str, agent_id: &str, state: TaskState, created: i64) -> Task {
        Task {
            id: id.into(),
            agent_id: agent_id.into(),
            node_id: "n".into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                endpoint: "https://127.0.0.1:9735".into(),
                ..Default::default()
            }),
            created_unix_ms: created,
            ..Default::default()
        }
    }

    /// A node the owner wants running, last placed on `agent_id`.
    fn node(agent_id: &str) -> HostedNode {
        HostedNode {
            node_id: "n".into(),
            agent_id: agent_id.into(),
            desired_running: true,
            state: HostedNodeState::Running as i32,
            ..Default::default()
        }
    }

    fn plan<'t>(
        node: &HostedNode,
        agents: &[Agent],
        tasks: &'t [Task],
        lost: &mut Lost,
        now: Instant,
        now_ms: i64,
    ) -> Plan<'t> {
        let pass = Agents::new(agents, tasks, TTL);
        let refs: Vec<&Task> = tasks.iter().collect();
        judge(node, &refs, &pass, lost, now, now_ms)
    }

    #[test]
    fn a_node_on_a_down_agent_fails_over_once_the_margin_has_passed() {
        let agents = [agent("a", AgentState::Down), agent("b", AgentState::Ready)];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, t0) = (Lost::default(), Instant::now());
        let margin = failover_margin(TTL);

        let p = plan(&node("a"), &agents, &tasks, &mut lost, t0, 0);
        assert!(p.lost.is_empty());
        assert_eq!(
            p.verdict,
            Verdict::Unavailable {
                task: Some(&tasks[0]),
                failover_in: Some(margin)
            }
        );
        let p = plan(&node("a"), &agents, &tasks, &mut lost, t0 + margin - MS, 0);
        assert_eq!(
            p.verdict,
            Verdict::Unavailable {
                task: Some(&tasks[0]),
                failover_in: Some(MS)
            },
            "not a moment before the margin"
        );
        let p = plan(&node("a"), &agents, &tasks, &mut lost, t0 + margin, 0);
        assert_eq!(p.lost, vec![&tasks[0]], "the task is forgotten");
        assert_eq!(p.verdict, Verdict::FailOver { agent: "b".into() });
    }

    #[test]
    fn a_disconnected_agent_waits_a_ttl_more_than_a_down_one() {
        let agents = [
            agent("a", AgentState::Disconnected),
            agent("b", AgentState::Ready),
        ];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, t0) = (Lost::default(), Instant::now());
        let margin = failover_margin(TTL);

        plan(&node("a"), &agents, &tasks, &mut lost, t0, 0);
        let p = plan(&node("a"), &agents, &tasks, &mut lost, t0 + margin, 0);
        assert!(p.lost.is_empty());
        assert_eq!(
            p.verdict,
            Verdict::Unavailable {
                task: Some(&tasks[0]),
                failover_in: Some(TTL)
            }
        );
        let p = plan(&node("a"), &agents, &tasks, &mut lost, t0 + TTL + margin, 0);
        assert_eq!(p.lost, vec![&tasks[0]]);
        assert_eq!(p.verdict, Verdict::FailOver { agent: "b".into() });
    }

    #[test]
    fn unknown_is_not_down_and_the_wait_starts_when_the_agent_is_seen_down() {
        let mut agents = [
            agent("a", AgentState::Unknown),
            agent("b", AgentState::Ready),
        ];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, t0) = (Lost::default(), Instant::now());
        let margin = failover_margin(TTL);

        // UNKNOWN after a leader change: still serving, for however long.
        plan(&node("a"), &agents, &tasks, &mut lost, t0, 0);
        let later = t0 + Duration::from_secs(3600);
        let p = plan(&node("a"), &agents, &tasks, &mut lost, later, 0);
        assert!(p.lost.is_empty());
        assert_eq!(p.verdict, Verdict::Running { task: &tasks[0] });

        // Once DOWN, the margin counts from then, not from the first pass.
        agents[0] = agent("a", AgentState::Down);
        let p = plan(&node("a"), &agents, &tasks, &mut lost, later, 0);
        assert_eq!(
            p.verdict,
            Verdict::Unavailable {
                task: Some(&tasks[0]),
                failover_in: Some(margin)
            }
        );
    }

    #[test]
    fn a_change_from_down_to_disconnected_restarts_the_wait() {
        let mut agents = [agent("a", AgentState::Down), agent("b", AgentState::Ready)];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, t0) = (Lost::default(), Instant::now());
        let margin = failover_margin(TTL);

        plan(&node("a"), &agents, &tasks, &mut lost, t0, 0);
        agents[0] = agent("a", AgentState::Disconnected);
        let p = plan(&node("a"), &agents, &tasks, &mut lost, t0 + margin, 0);
        assert!(p.lost.is_empty());
        assert_eq!(
            p.verdict,
            Verdict::Unavailable {
                task: Some(&tasks[0]),
                failover_in: Some(TTL + margin)
            }
        );
    }

    #[test]
    fn a_node_whose_agent_left_the_cluster_fails_over_at_once() {
        let agents = [agent("b", AgentState::Ready)];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        let p = plan(
            &node("a"),
            &agents,
            &tasks,
            &mut Lost::default(),
            Instant::now(),
            0,
        );
        assert_eq!(p.lost, vec![&tasks[0]]);
        assert_eq!(p.verdict, Verdict::FailOver { agent: "b".into() });
    }

    #[test]
    fn a_draining_agents_node_is_stopped_there_then_started_elsewhere() {
        let mut a = agent("a", AgentState::Ready);
        a.availability = Availability::Drain as i32;
        let agents = [a, agent("b", AgentState::Ready)];
        let running = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, now) = (Lost::default(), Instant::now());

        let p = plan(&node("a"), &agents, &running, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Move {
                live: vec![&running[0]],
                draining: true
            }
        );

        // Stopped cleanly (asked to shut down, then complete): start on the other.
        let mut stopped = running.clone();
        stopped[0].desired_state = TaskState::Shutdown as i32;
        stopped[0].status.as_mut().unwrap().state = TaskState::Complete as i32;
        let p = plan(&node("a"), &agents, &stopped, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Start { agent: "b".into() },
            "a completed task on a draining agent is not a failure to back off from"
        );
        assert_eq!(
            p.finished,
            vec![&stopped[0]],
            "the stopped task is forgotten"
        );
    }

    #[test]
    fn an_operator_move_stops_the_node_then_starts_it_on_the_named_agent() {
        let agents = [
            agent("a", AgentState::Ready),
            agent("b", AgentState::Ready),
            agent("c", AgentState::Ready),
        ];
        let mut moving = node("a");
        moving.move_to = "c".into();
        let running = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, now) = (Lost::default(), Instant::now());

        let p = plan(&moving, &agents, &running, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Move {
                live: vec![&running[0]],
                draining: false
            }
        );
        let mut stopped = running.clone();
        stopped[0].status.as_mut().unwrap().state = TaskState::Complete as i32;
        let p = plan(&moving, &agents, &stopped, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Start { agent: "c".into() },
            "not b, which placement would pick"
        );
    }

    #[test]
    fn an_upgrade_stops_the_task_cleanly_then_starts_the_node_again_in_place() {
        let agents = [agent("a", AgentState::Ready), agent("b", AgentState::Ready)];
        let mut upgrading = node("a");
        upgrading.upgrade_task = "t".into();
        let running = [task("t", "a", TaskState::Running, 1)];
        let (mut lost, now) = (Lost::default(), Instant::now());

        let p = plan(&upgrading, &agents, &running, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Upgrade {
                live: vec![&running[0]]
            }
        );
        let mut stopped = running.clone();
        stopped[0].desired_state = TaskState::Shutdown as i32;
        stopped[0].status.as_mut().unwrap().state = TaskState::Complete as i32;
        let p = plan(&upgrading, &agents, &stopped, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Start { agent: "a".into() },
            "where it ran, and not as a failure to back off from"
        );
        // Its next task runs: no longer the one being replaced.
        let next = [stopped[0].clone(), task("t2", "a", TaskState::Running, 2)];
        let p = plan(&upgrading, &agents, &next, &mut lost, now, 0);
        assert_eq!(p.verdict, Verdict::Running { task: &next[1] });
    }

    /// Also while exporting: ExportNode clears `desired_running` and waits for
    /// this stop (the node stays EXPORTING; `apply` keeps the state).
    #[test]
    fn a_node_the_owner_does_not_want_running_has_its_tasks_stopped() {
        let agents = [agent("a", AgentState::Ready)];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        for state in [HostedNodeState::Running, HostedNodeState::Exporting] {
            let mut stopping = node("a");
            stopping.desired_running = false;
            stopping.state = state as i32;
            let p = plan(
                &stopping,
                &agents,
                &tasks,
                &mut Lost::default(),
                Instant::now(),
                0,
            );
            assert_eq!(
                p.verdict,
                Verdict::Stop {
                    live: vec![&tasks[0]]
                },
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_running_task_without_an_endpoint_is_restarting() {
        let agents = [agent("a", AgentState::Ready)];
        let mut tasks = [task("t", "a", TaskState::Running, 1)];
        tasks[0].status.as_mut().unwrap().endpoint.clear();
        let p = plan(
            &node("a"),
            &agents,
            &tasks,
            &mut Lost::default(),
            Instant::now(),
            0,
        );
        assert_eq!(p.verdict, Verdict::Restarting { task: &tasks[0] });
    }

    #[test]
    fn a_task_not_yet_running_is_starting_unless_its_agent_is_silent() {
        let mut agents = [agent("a", AgentState::Ready), agent("b", AgentState::Ready)];
        let tasks = [task("t", "a", TaskState::Assigned, 1)];
        let (mut lost, now) = (Lost::default(), Instant::now());
        let p = plan(&node("a"), &agents, &tasks, &mut lost, now, 0);
        assert_eq!(p.verdict, Verdict::Starting);

        agents[0] = agent("a", AgentState::Down);
        let p = plan(&node("a"), &agents, &tasks, &mut lost, now, 0);
        assert_eq!(
            p.verdict,
            Verdict::Unavailable {
                task: None,
                failover_in: Some(failover_margin(TTL))
            }
        );
    }

    #[test]
    fn a_failed_task_is_restarted_in_place_after_a_backoff() {
        let agents = [agent("a", AgentState::Ready), agent("b", AgentState::Ready)];
        let tasks = [task("t", "a", TaskState::Failed, 1)];
        let (mut lost, now) = (Lost::default(), Instant::now());
        let mut n = node("a");

        let p = plan(&n, &agents, &tasks, &mut lost, now, 10_000);
        assert_eq!(p.verdict, Verdict::Backoff);
        assert!(p.finished.is_empty(), "the latest task is kept");

        n.next_start_unix_ms = 10_500;
        let p = plan(&n, &agents, &tasks, &mut lost, now, 10_499);
        assert_eq!(p.verdict, Verdict::BackingOff);
        let p = plan(&n, &agents, &tasks, &mut lost, now, 10_500);
        assert_eq!(
            p.verdict,
            Verdict::Start { agent: "a".into() },
            "on the agent it ran on"
        );
    }

    #[test]
    fn with_no_agent_to_take_it_a_node_waits_only_for_unknown_agents() {
        let never_placed = node("");
        let unknown = [agent("a", AgentState::Unknown)];
        let p = plan(
            &never_placed,
            &unknown,
            &[],
            &mut Lost::default(),
            Instant::now(),
            0,
        );
        assert!(
            matches!(&p.verdict, Verdict::WaitForAgents { why } if why.contains("agent a")),
            "{:?}",
            p.verdict
        );

        let down = [agent("a", AgentState::Down)];
        let p = plan(
            &never_placed,
            &down,
            &[],
            &mut Lost::default(),
            Instant::now(),
            0,
        );
        assert!(
            matches!(&p.verdict, Verdict::NoAgent { why } if why.contains("agent a is DOWN")),
            "{:?}",
            p.verdict
        );
    }

    #[test]
    fn older_finished_tasks_are_forgotten_and_the_latest_is_kept() {
        let agents = [agent("a", AgentState::Ready)];
        let tasks = [
            task("old", "a", TaskState::Complete, 1),
            task("new", "a", TaskState::Running, 2),
        ];
        let p = plan(
            &node("a"),
            &agents,
            &tasks,
            &mut Lost::default(),
            Instant::now(),
            0,
        );
        assert_eq!(p.verdict, Verdict::Running { task: &tasks[1] });
        assert_eq!(p.finished, vec![&tasks[0]]);
    }

    #[test]
    fn an_exported_node_is_left_alone() {
        let agents = [agent("a", AgentState::Down)];
        let tasks = [task("t", "a", TaskState::Running, 1)];
        let mut exported = node("a");
        exported.state = HostedNodeState::Exported as i32;
        let mut lost = Lost::default();
        let p = plan(&exported, &agents, &tasks, &mut lost, Instant::now(), 0);
        assert_eq!(p.verdict, Verdict::Exported);
        assert!(p.lost.is_empty() && p.finished.is_empty());
        assert!(
            lost.seen.is_empty(),
            "its agent is not being watched for it"
        );
    }
}
