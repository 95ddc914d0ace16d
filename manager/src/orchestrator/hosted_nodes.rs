//! Desired vs actual for hosted Lightning nodes.
//!
//! - A node the owner wants running gets a task on the agent that holds its state
//!   (sticky), or, the first time, on the agent placement picks.
//! - A new task is created only when the node has no live task, in a transaction
//!   that requires the node record unchanged, so two orchestrators (an old and a new
//!   leader) can never both start one: a node never has two live tasks.
//! - A task that failed is replaced on the same agent after a backoff.
//! - On a draining agent the node's task is stopped and nothing starts elsewhere.
//! - A node whose agent is down is reported unavailable and is not moved.

use std::collections::HashMap;

use lnswarm_common::{
    api::{
        task_spec::Runtime, Agent, AgentState, Availability, HostedNode, HostedNodeSpec,
        HostedNodeState, NodeTlsSecret, Secret, Task, TaskSpec, TaskState,
    },
    ids::now_unix_ms,
    pki::{new_key_and_csr, Role},
};
use prost::Message;
use tonic::Status;
use tracing::info;

use crate::{
    ca::sign_leaf,
    cluster,
    placement::{self, agent_state, is_live, Load},
    store::{keys, secrets, Store, TxnBuilder},
};

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

/// One pass over every hosted node. Agents and tasks are read only when there is a
/// node to reconcile: a cluster's agents can far outnumber its hosted nodes.
pub async fn reconcile(store: &Store) -> Result<(), Status> {
    let nodes = store.list::<HostedNode>(keys::HOSTED_NODES)?;
    if nodes.is_empty() {
        return Ok(());
    }
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
) -> Result<(), Status> {
    if node.state == HostedNodeState::Exported as i32 {
        return Ok(());
    }
    let key = keys::hosted_node(&node.node_id);
    let mut next = node.clone();
    let mut txn = TxnBuilder::new().require_version(&key, version);
    let mut changed_tasks = false;
    let now = now_unix_ms();
    let agent = agents.by_id.get(node.agent_id.as_str()).copied();
    let live: Vec<&Task> = node_tasks.iter().copied().filter(|t| is_live(t)).collect();
    let draining = agent.is_some_and(|a| a.availability == Availability::Drain as i32);

    // Stop what should not run: everything when the owner does not want it running
    // or its agent drains.
    if !node.desired_running || draining {
        for t in live
            .iter()
            .filter(|t| t.desired_state == TaskState::Running as i32)
        {
            let mut t = (*t).clone();
            t.desired_state = TaskState::Shutdown as i32;
            txn = txn.put_tagged(keys::task(&t.id), &t, [keys::agent_tag(&t.agent_id)]);
            changed_tasks = true;
        }
        next.grpc_uri.clear();
        next.state = HostedNodeState::Stopped as i32;
        next.message = match (draining, live.is_empty()) {
            (true, _) => format!("stopped: agent {} is draining", node.agent_id),
            (false, true) => "stopped".into(),
            (false, false) => "stopping".into(),
        };
        if node.state == HostedNodeState::Registered as i32 && live.is_empty() && !draining {
            next.state = HostedNodeState::Registered as i32;
            next.message.clear();
        }
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
            next.message = format!(
                "restarting on agent {}: {}",
                node.agent_id,
                t.status.as_ref().map(|s| s.message.as_str()).unwrap_or("")
            );
        } else if agent_up {
            next.state = HostedNodeState::Running as i32;
            next.grpc_uri = endpoint;
            next.message.clear();
            next.restarts = 0;
            next.next_start_unix_ms = 0;
        } else {
            next.state = HostedNodeState::Unavailable as i32;
            next.grpc_uri.clear();
            next.message = format!(
                "its agent {} is not READY; the node is not moved",
                node.agent_id
            );
        }
        next.task_id = t.id.clone();
    } else if !live.is_empty() {
        // Starting, or stuck on an agent that stopped answering.
        let agent_up = agent.is_some_and(holds_its_tasks);
        next.grpc_uri.clear();
        if agent_up {
            next.state = HostedNodeState::Scheduled as i32;
            next.message = format!("starting on agent {}", node.agent_id);
        } else {
            next.state = HostedNodeState::Unavailable as i32;
            next.message = format!(
                "its agent {} is not READY; the node is not moved",
                node.agent_id
            );
        }
    } else {
        // No live task: start one, on the sticky agent if the node has one.
        let target = if node.agent_id.is_empty() {
            placement::choose(agents.all, &agents.load)
        } else {
            let live_on = agents.load.on(&node.agent_id);
            match agent {
                None => Err(format!(
                    "its agent {} has left the cluster; the node is not moved",
                    node.agent_id
                )),
                Some(a) => match placement::unfit(a, live_on) {
                    Some(why) => Err(format!(
                        "{why}; the node's state is on that agent, so it is not moved"
                    )),
                    None => Ok(a.id.clone()),
                },
            }
        };
        let previous_failed = node_tasks
            .iter()
            .max_by_key(|t| t.created_unix_ms)
            .is_some_and(|t| {
                task_state(t) >= TaskState::Failed as i32
                    || task_state(t) == TaskState::Complete as i32
            });
        next.grpc_uri.clear();
        match target {
            // Agents are UNKNOWN until they find a new leader: wait for them rather
            // than give up on a node that has somewhere to go in a moment.
            Err(why) if agents.all.iter().any(may_return) => {
                next.state = HostedNodeState::Scheduled as i32;
                next.message = format!("waiting for agents to report to the new leader ({why})");
            }
            Err(why) => {
                next.state = HostedNodeState::Unavailable as i32;
                next.message = why;
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
                let (task, secret_ops) = new_task(store, &node, &agent_id, host)?;
                agents.load.add(&agent_id);
                for secret in secret_ops {
                    txn = secrets::put(store, txn, &secret, [keys::agent_tag(&agent_id)])?;
                }
                txn = txn.require_absent(keys::task(&task.id)).put_tagged(
                    keys::task(&task.id),
                    &task,
                    [keys::agent_tag(&agent_id)],
                );
                changed_tasks = true;
                info!(node = %node.node_id, agent = %agent_id, task = %task.id, "starting hosted node");
                next.agent_id = agent_id.clone();
                next.task_id = task.id;
                next.next_start_unix_ms = 0;
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

/// A task for `node` on `agent_id`, and the secret writes it needs (its TLS
/// certificate; the seed secret already exists from registration). `host` is the
/// agent's advertised address, which the node's certificate names.
fn new_task(
    store: &Store,
    node: &HostedNode,
    agent_id: &str,
    host: Option<String>,
) -> Result<(Task, Vec<Secret>), Status> {
    let (_, record) = cluster::load(store)?;
    let settings = cluster::effective_settings(&record);
    let host: Vec<std::net::IpAddr> = host
        .as_deref()
        .and_then(lnswarm_common::pki::ip_of_address)
        .into_iter()
        .collect();
    let key = new_key_and_csr(&node.node_id, Some(Role::Node))
        .map_err(|e| Status::internal(e.to_string()))?;
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
            })),
            secret_ids: vec![seed_id, tls.id.clone()],
        },
        agent_id,
        &node.node_id,
    );
    Ok((task, vec![tls]))
}
