//! Upgrading hosted nodes to the `lnswarm-node` their agent ships. Agents report
//! the version of the binary they would start (their description) and the one each
//! task runs (its status); a node whose version is behind its agent's is upgraded
//! by naming its current task in `upgrade_task`: the orchestrator then stops that
//! task cleanly and starts the next one (a new epoch, same agent when it can), the
//! path drains and moves take, so the node keeps its channels.
//!
//! Two callers ask for it: the owner (Scheduler.MaybeUpgrade, one node) and the
//! operator (a [`RollingUpgrade`] record, which [`pace`] follows on every
//! orchestrator pass, so a new leader carries it on).

use std::{cmp::Ordering, collections::HashMap};

use lnswarm_common::api::{Agent, AgentState, HostedNode, HostedNodeState, RollingUpgrade};

use crate::{
    cluster,
    placement::agent_state,
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

/// Why an upgrade could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("no hosted node {0}")]
    UnknownNode(String),
    #[error("max share must be between 1 and 100 %, not {0}")]
    InvalidShare(u32),
}

/// `a` against `b` as dotted versions ("0.1.10" > "0.1.9"); `None` when either is
/// not one (an agent that reports none, or a build's odd tag): never upgraded then.
fn compare(a: &str, b: &str) -> Option<Ordering> {
    fn parts(v: &str) -> Option<Vec<u64>> {
        let core = v.split(['-', '+']).next()?;
        core.split('.').map(|p| p.parse().ok()).collect()
    }
    let (a, b) = (parts(a)?, parts(b)?);
    Some(a.cmp(&b))
}

/// The newer version `node` would run on `agent`, if the agent ships one newer
/// than the node runs.
fn ships_newer<'a>(node: &HostedNode, agent: &'a Agent) -> Option<&'a str> {
    let shipped = agent.description.as_ref()?.node_version.as_str();
    (compare(&node.running_version, shipped)? == Ordering::Less).then_some(shipped)
}

/// As [`ships_newer`], for an agent that is READY (it can restart the node now).
pub fn newer_on_agent<'a>(node: &HostedNode, agent: Option<&'a Agent>) -> Option<&'a str> {
    ships_newer(node, agent.filter(|a| agent_state(a) == AgentState::Ready)?)
}

/// Whether `node` serves now and could be restarted for an upgrade.
fn serving(node: &HostedNode) -> bool {
    node.state == HostedNodeState::Running as i32
        && node.desired_running
        && node.upgrade_task.is_empty()
        && !node.task_id.is_empty()
}

/// MaybeUpgrade: restarts `node_id` on its agent's newer `lnswarm-node` when it
/// serves on an older one, and answers the version it runs now; `None` when there
/// is nothing to upgrade (already current, not running, or already upgrading).
pub async fn maybe_upgrade(store: &Store, node_id: &str) -> Result<Option<String>, UpgradeError> {
    let key = keys::hosted_node(node_id);
    let (old, _) = store
        .update("the hosted node", |store| {
            let (version, mut node) = store
                .get::<HostedNode>(&key)?
                .ok_or_else(|| UpgradeError::UnknownNode(node_id.to_string()))?;
            let agent = store
                .get::<Agent>(&keys::agent(&node.agent_id))?
                .map(|(_, a)| a);
            if !serving(&node) || newer_on_agent(&node, agent.as_ref()).is_none() {
                return Ok(Attempt::Done(None));
            }
            let old = node.running_version.clone();
            node.upgrade_task = node.task_id.clone();
            let txn = TxnBuilder::new()
                .require_version(&key, version)
                .put_tagged(&key, &node, [keys::node_tag(node_id)])
                .build();
            Ok::<_, UpgradeError>(Attempt::Propose(txn, Some(old)))
        })
        .await?;
    Ok(old)
}

/// How many of `total` nodes restart at once under `share_percent` (at least one).
pub fn at_once(total: usize, share_percent: u32) -> usize {
    (total * share_percent as usize / 100).max(1)
}

/// Starts a rolling upgrade (replacing one in progress) at `share` percent, or the
/// cluster's setting; answers how many nodes are behind now and how many restart
/// at once.
pub async fn start_rolling(
    store: &Store,
    share: Option<u32>,
) -> Result<(usize, usize), UpgradeError> {
    if let Some(s) = share.filter(|s| !(1..=100).contains(s)) {
        return Err(UpgradeError::InvalidShare(s));
    }
    let (_, record) = cluster::load(store)?;
    let share =
        share.unwrap_or_else(|| cluster::effective_settings(&record).upgrade_max_share_percent);
    let rolling = RollingUpgrade {
        max_share_percent: share,
        started_unix_ms: lnswarm_common::ids::now_unix_ms(),
    };
    store
        .propose(
            TxnBuilder::new()
                .put(keys::ROLLING_UPGRADE, &rolling)
                .build(),
        )
        .await?;
    let nodes: Vec<HostedNode> = store
        .list::<HostedNode>(keys::HOSTED_NODES)?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let agents: HashMap<String, Agent> = store
        .list::<Agent>(keys::AGENTS)?
        .into_iter()
        .map(|(_, a)| (a.id.clone(), a))
        .collect();
    let behind = nodes
        .iter()
        .filter(|n| newer_on_agent(n, agents.get(&n.agent_id)).is_some())
        .count();
    let wanted = nodes.iter().filter(|n| n.desired_running).count();
    Ok((behind, at_once(wanted, share)))
}

/// What a rolling upgrade does in one pass.
#[derive(Debug, PartialEq)]
enum Step {
    /// Nothing is behind or upgrading: it is over.
    Finish,
    /// Mark these nodes (indexes into the pass's nodes) for an upgrade.
    Mark(Vec<usize>),
    /// Upgrades are in flight, or the nodes behind cannot restart now.
    Wait,
}

/// The rolling upgrade's step for `nodes` at `share` percent: as many nodes that
/// serve on an older version than their READY agent ships as the share leaves room
/// for beside those still upgrading. A node whose agent is UNKNOWN (a new leader's
/// grace) still counts as behind, so a leader change does not end it early.
fn step(nodes: &[&HostedNode], agents: &HashMap<&str, &Agent>, share: u32) -> Step {
    let agent = |n: &HostedNode| agents.get(n.agent_id.as_str()).copied();
    let upgrading = nodes.iter().filter(|n| !n.upgrade_task.is_empty()).count();
    let pending = nodes.iter().any(|n| {
        n.desired_running
            && agent(n).is_some_and(|a| {
                matches!(agent_state(a), AgentState::Ready | AgentState::Unknown)
                    && ships_newer(n, a).is_some()
            })
    });
    if !pending && upgrading == 0 {
        return Step::Finish;
    }
    let wanted = nodes.iter().filter(|n| n.desired_running).count();
    let room = at_once(wanted, share).saturating_sub(upgrading);
    let marks: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| serving(n) && newer_on_agent(n, agent(n)).is_some())
        .map(|(i, _)| i)
        .take(room)
        .collect();
    if marks.is_empty() {
        Step::Wait
    } else {
        Step::Mark(marks)
    }
}

/// One orchestrator pass's step of a rolling upgrade ([`step`]), written: marks
/// nodes, or ends the upgrade (deletes its record). Returns whether it wrote
/// anything (the pass then reads the nodes again).
pub async fn pace(
    store: &Store,
    nodes: &[(u64, HostedNode)],
    agents: &[Agent],
) -> Result<bool, StoreError> {
    let Some((version, rolling)) = store.get::<RollingUpgrade>(keys::ROLLING_UPGRADE)? else {
        return Ok(false);
    };
    let by_id: HashMap<&str, &Agent> = agents.iter().map(|a| (a.id.as_str(), a)).collect();
    let just_nodes: Vec<&HostedNode> = nodes.iter().map(|(_, n)| n).collect();
    let marks = match step(&just_nodes, &by_id, rolling.max_share_percent) {
        Step::Wait => return Ok(false),
        Step::Mark(marks) => marks,
        Step::Finish => {
            tracing::info!("rolling upgrade finished");
            store
                .propose(
                    TxnBuilder::new()
                        .require_version(keys::ROLLING_UPGRADE, version)
                        .delete_tagged(keys::ROLLING_UPGRADE, Vec::<String>::new())
                        .build(),
                )
                .await?;
            return Ok(true);
        }
    };
    let mut txn = TxnBuilder::new();
    for (v, n) in marks.into_iter().map(|i| &nodes[i]) {
        tracing::info!(node = %n.node_id, from = %n.running_version, "rolling upgrade: restarting the node");
        let key = keys::hosted_node(&n.node_id);
        let mut next = n.clone();
        next.upgrade_task = n.task_id.clone();
        txn = txn
            .require_version(&key, *v)
            .put_tagged(&key, &next, [keys::node_tag(&n.node_id)]);
    }
    store.propose(txn.build()).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers_and_odd_ones_never_upgrade() {
        assert_eq!(compare("0.1.9", "0.1.10"), Some(Ordering::Less));
        assert_eq!(compare("0.2.0", "0.1.10"), Some(Ordering::Greater));
        assert_eq!(compare("0.1.0-rc1", "0.1.0"), Some(Ordering::Equal));
        assert_eq!(compare("", "0.1.0"), None, "a node that reported none");
        assert_eq!(compare("0.1.0", "dev"), None);
    }

    fn agent(id: &str, state: AgentState, ships: &str) -> Agent {
        Agent {
            id: id.into(),
            description: Some(lnswarm_common::api::AgentDescription {
                node_version: ships.into(),
                ..Default::default()
            }),
            status: Some(lnswarm_common::api::AgentStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn refs(nodes: &[HostedNode]) -> Vec<&HostedNode> {
        nodes.iter().collect()
    }

    fn node(agent_id: &str, runs: &str) -> HostedNode {
        HostedNode {
            agent_id: agent_id.into(),
            running_version: runs.into(),
            state: HostedNodeState::Running as i32,
            desired_running: true,
            task_id: "t".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rolling_upgrade_keeps_to_its_share_and_outlives_a_leader_change() {
        let agents = [
            agent("a", AgentState::Ready, "0.2.0"),
            agent("u", AgentState::Unknown, "0.2.0"),
        ];
        let by_id: HashMap<&str, &Agent> = agents.iter().map(|a| (a.id.as_str(), a)).collect();
        let mut nodes: Vec<HostedNode> = (0..4).map(|_| node("a", "0.1.0")).collect();
        // Half of four: two at once.
        assert_eq!(step(&refs(&nodes), &by_id, 50), Step::Mark(vec![0, 1]));
        // One still upgrading leaves room for one more.
        nodes[0].upgrade_task = "t".into();
        assert_eq!(step(&refs(&nodes), &by_id, 50), Step::Mark(vec![1]));
        nodes[1].upgrade_task = "t".into();
        assert_eq!(step(&refs(&nodes), &by_id, 50), Step::Wait);
        // All current: over.
        for n in &mut nodes {
            n.upgrade_task.clear();
            n.running_version = "0.2.0".into();
        }
        assert_eq!(step(&refs(&nodes), &by_id, 50), Step::Finish);
        // A node behind on an agent that has not reported to a new leader yet is
        // not restarted, and does not end the upgrade either.
        nodes[3] = node("u", "0.1.0");
        assert_eq!(step(&refs(&nodes), &by_id, 50), Step::Wait);
    }

    #[test]
    fn a_share_restarts_at_least_one_node() {
        assert_eq!(at_once(3, 10), 1);
        assert_eq!(at_once(30, 10), 3);
        assert_eq!(at_once(0, 10), 1);
        assert_eq!(at_once(4, 50), 2);
    }
}
