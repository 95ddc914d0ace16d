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
//! - a task that failed is replaced after a backoff.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lnswarm_common::{
    api::{
        task_spec::Runtime, Agent, AgentState, Availability, HostedNode, HostedNodeSpec,
        HostedNodeState, NodeLease, NodeTlsSecret, Secret, Task, TaskSpec, TaskState,
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

/// When this leader first saw each agent DOWN or DISCONNECTED, on its own monotonic
/// clock: a new leader starts counting afresh, so wall clocks never enter into it.
#[derive(Default)]
pub struct Lost {
    seen: HashMap<String, (AgentState, Instant)>,
}

impl Lost {
    /// Whether the lease of every node on `agent` has run out for certain.
    /// A DOWN agent was written so a TTL after its last heartbeat, so the margin
    /// suffices; a DISCONNECTED one left at once and gets the TTL too.
    fn lease_gone(&mut self, agent: &Agent, ttl: Duration, now: Instant) -> Result<(), Duration> {
        let state = agent_state(agent);
        let wait = match state {
            AgentState::Down => failover_margin(ttl),
            AgentState::Disconnected => ttl + failover_margin(ttl),
            _ => {
                self.seen.remove(&agent.id);
                return Err(Duration::MAX);
            }
        };
        let entry = self.seen.entry(agent.id.clone()).or_insert((state, now));
        if entry.0 != state {
            *entry = (state, now);
        }
        let waited = now.saturating_duration_since(entry.1);
        if waited >= wait {
            Ok(())
        } else {
            Err(wait - waited)
        }
    }
}

/// One pass over every hosted node. Agents and tasks are read only when there is a
/// node to reconcile: a cluster's agents can far outnumber its hosted nodes.
pub async fn reconcile(store: &Store, lost: &mut Lost) -> Result<(), ReconcileError> {
    let nodes = store.list::<HostedNode>(keys::HOSTED_NODES)?;
    if nodes.is_empty() {
        return Ok(());
    }
    let (_, record) = cluster::load(store)?;
    let ttl =
        HeartbeatTiming::from_settings(record.settings.as_ref(), &DispatcherConfig::default())
            .ttl();
    // Off the runtime's threads: in a large cluster these take milliseconds.
    let (agent_list, tasks) = store.read_off_thread(placement::agents_and_tasks).await?;
    let mut by_node: HashMap<&str, Vec<&Task>> = HashMap::new();
    for t in &tasks {
        if !t.node_id.is_empty() {
            by_node.entry(t.node_id.as_str()).or_default().push(t);
        }
    }
    let mut agents = Agents {
        all: &agent_list,
        by_id: agent_list.iter().map(|a| (a.id.as_str(), a)).collect(),
        load: Load::of(&tasks),
        lost,
        ttl,
        now: Instant::now(),
    };
    for (version, node) in nodes {
        let node_tasks = by_node.remove(node.node_id.as_str()).unwrap_or_default();
        reconcile_node(store, version, node, &node_tasks, &mut agents).await?;
    }
    Ok(())
}

/// What one pass knows about the agents, indexed once for all its nodes.
struct Agents<'a> {
    all: &'a [Agent],
    by_id: HashMap<&'a str, &'a Agent>,
    /// Live tasks per agent, including those this pass started.
    load: Load,
    lost: &'a mut Lost,
    ttl: Duration,
    now: Instant,
}

impl Agents<'_> {
    /// Whether `t` is gone for good: its agent left the cluster, or is DOWN and the
    /// lease of its nodes has run out. `Err` holds how long until it will be.
    fn task_gone(&mut self, t: &Task) -> Result<(), Duration> {
        match self.by_id.get(t.agent_id.as_str()) {
            None => Ok(()),
            Some(a) => self.lost.lease_gone(a, self.ttl, self.now),
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

async fn reconcile_node(
    store: &Store,
    version: u64,
    node: HostedNode,
    node_tasks: &[&Task],
    agents: &mut Agents<'_>,
) -> Result<(), ReconcileError> {
    if node.state == HostedNodeState::Exported as i32 {
        return Ok(());
    }
    let key = keys::hosted_node(&node.node_id);
    let mut next = node.clone();
    let mut txn = TxnBuilder::new().require_version(&key, version);
    let mut changed_tasks = false;
    let now = now_unix_ms();
    let agent = agents.by_id.get(node.agent_id.as_str()).copied();

    // Tasks on an agent whose lease has run out are gone: forget them (an agent
    // that comes back is sent a set without them, and stops what it left behind).
    let mut live: Vec<&Task> = Vec::new();
    let mut failover_in: Option<Duration> = None;
    let mut failed_over = false;
    for t in node_tasks.iter().copied().filter(|t| is_live(t)) {
        match agents.task_gone(t) {
            Ok(()) => {
                info!(node = %node.node_id, task = %t.id, agent = %t.agent_id, "the node's agent is gone and its lease has run out; moving the node");
                txn = txn.delete_tagged(keys::task(&t.id), [keys::agent_tag(&t.agent_id)]);
                changed_tasks = true;
                failed_over = true;
            }
            Err(wait) => {
                if wait != Duration::MAX {
                    failover_in = Some(wait);
                }
                live.push(t);
            }
        }
    }
    let draining = agent.is_some_and(|a| a.availability == Availability::Drain as i32);
    let leaving = draining || !node.move_to.is_empty();

    if !node.desired_running {
        // Stop everything the owner does not want running.
        txn = stop_tasks(txn, &live, &mut changed_tasks);
        next.grpc_uri.clear();
        next.lightning_addr.clear();
        next.move_to.clear();
        next.state = HostedNodeState::Stopped as i32;
        next.message = if live.is_empty() {
            "stopped"
        } else {
            "stopping"
        }
        .into();
        if node.state == HostedNodeState::Registered as i32 && live.is_empty() {
            next.state = HostedNodeState::Registered as i32;
            next.message.clear();
        }
    } else if leaving && !live.is_empty() {
        // A drain or a move: stop cleanly here first; it starts elsewhere once the
        // task has stopped (never two copies, and no write is cut off mid-flight).
        txn = stop_tasks(txn, &live, &mut changed_tasks);
        next.grpc_uri.clear();
        next.lightning_addr.clear();
        next.state = HostedNodeState::Scheduled as i32;
        next.message = if draining {
            format!("moving: agent {} is draining", node.agent_id)
        } else {
            format!("moving off agent {}", node.agent_id)
        };
    } else if let Some(t) = live
        .iter()
        .find(|t| task_state(t) == TaskState::Running as i32)
    {
        let agent_up = agent.is_some_and(holds_its_tasks);
        let endpoint = t
            .status
            .as_ref()
            .map(|s| s.endpoint.clone())
            .unwrap_or_default();
        if agent_up && endpoint.is_empty() {
            // States never go back, so a process restarting after a crash stays
            // RUNNING with no endpoint until it serves again.
            next.state = HostedNodeState::Scheduled as i32;
            next.grpc_uri.clear();
            next.lightning_addr.clear();
            next.message = format!(
                "restarting on agent {}: {}",
                node.agent_id,
                t.status.as_ref().map(|s| s.message.as_str()).unwrap_or("")
            );
        } else if agent_up {
            next.state = HostedNodeState::Running as i32;
            next.grpc_uri = endpoint;
            next.lightning_addr = t
                .status
                .as_ref()
                .map(|s| s.lightning_addr.clone())
                .unwrap_or_default();
            next.message.clear();
            next.restarts = 0;
            next.next_start_unix_ms = 0;
        } else {
            next.state = HostedNodeState::Unavailable as i32;
            next.grpc_uri.clear();
            next.lightning_addr.clear();
            next.message = unavailable_message(&node.agent_id, failover_in);
        }
        next.task_id = t.id.clone();
    } else if !live.is_empty() {
        // Starting, or stuck on an agent that stopped answering.
        let agent_up = agent.is_some_and(holds_its_tasks);
        next.grpc_uri.clear();
        next.lightning_addr.clear();
        if agent_up {
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!("starting on agent {}", node.agent_id);
        } else {
            next.state = HostedNodeState::Unavailable as i32;
            next.message = unavailable_message(&node.agent_id, failover_in);
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
                        || (task_state(t) == TaskState::Complete as i32 && !leaving)
                });
        next.grpc_uri.clear();
        next.lightning_addr.clear();
        match target {
            // Agents are UNKNOWN until they find a new leader: wait for them rather
            // than give up on a node that has somewhere to go in a moment.
            Err(why) if agents.all.iter().any(may_return) => {
                next.state = HostedNodeState::Scheduled as i32;
                next.message = format!("waiting for agents to report to the new leader ({why})");
            }
            Err(why) => {
                next.state = HostedNodeState::Unavailable as i32;
                next.message = format!("no agent can run it now: {why}");
            }
            Ok(_) if previous_failed && node.next_start_unix_ms == 0 => {
                next.restarts = node.restarts + 1;
                next.next_start_unix_ms = now + restart_backoff_ms(node.restarts);
                next.state = HostedNodeState::Scheduled as i32;
                next.message = format!("restarting after a failure (attempt {})", next.restarts);
            }
            Ok(_) if now < node.next_start_unix_ms => {
                // Backing off; a later pass starts it.
            }
            Ok(agent_id) => {
                let host = agents
                    .by_id
                    .get(agent_id.as_str())
                    .and_then(|a| a.description.as_ref())
                    .map(|d| d.advertised_address.clone());
                let lease_key = keys::node_lease(&node.node_id);
                let previous = store.get::<NodeLease>(&lease_key)?;
                let epoch = previous.as_ref().map_or(0, |(_, l)| l.epoch) + 1;
                let (task, secret_ops) = new_task(store, &node, &agent_id, host, epoch)?;
                agents.load.add(&agent_id);
                for secret in secret_ops {
                    txn = secrets::put(store, txn, &secret, [keys::agent_tag(&agent_id)])?;
                }
                // The epoch moves in the transaction that creates the task.
                txn = match &previous {
                    Some((v, _)) => txn.require_version(&lease_key, *v),
                    None => txn.require_absent(&lease_key),
                }
                .put(
                    &lease_key,
                    &NodeLease {
                        node_id: node.node_id.clone(),
                        epoch,
                        task_id: task.id.clone(),
                        agent_id: agent_id.clone(),
                        granted_unix_ms: now,
                    },
                );
                txn = txn.require_absent(keys::task(&task.id)).put_tagged(
                    keys::task(&task.id),
                    &task,
                    [keys::agent_tag(&agent_id)],
                );
                changed_tasks = true;
                info!(node = %node.node_id, agent = %agent_id, task = %task.id, epoch, "starting hosted node");
                next.agent_id = agent_id.clone();
                next.task_id = task.id;
                next.next_start_unix_ms = 0;
                next.move_to.clear();
                next.state = HostedNodeState::Scheduled as i32;
                next.message = format!("starting on agent {agent_id}");
            }
        }
    }

    // Forget finished tasks that are no longer the node's latest.
    let newest = node_tasks.iter().map(|t| t.created_unix_ms).max();
    for t in node_tasks.iter().filter(|t| !is_live(t)) {
        if Some(t.created_unix_ms) != newest || t.desired_state == TaskState::Shutdown as i32 {
            txn = txn.delete_tagged(keys::task(&t.id), [keys::agent_tag(&t.agent_id)]);
            changed_tasks = true;
        }
    }

    if next.state != node.state {
        next.since_unix_ms = now;
    }
    if next == node && !changed_tasks {
        return Ok(());
    }
    txn = txn.put_tagged(&key, &next, [keys::node_tag(&node.node_id)]);
    // A failed check (someone changed the node meanwhile) is retried next pass.
    store.propose(txn.build()).await?;
    Ok(())
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
) -> Result<(Task, Vec<Secret>), ReconcileError> {
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
            cert_pem: cert.cert_pem,
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
    Ok((task, vec![tls]))
}
