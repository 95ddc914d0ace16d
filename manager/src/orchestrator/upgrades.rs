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

/// The newer version `node` would run on its agent, if its agent is READY and
/// ships one newer than the node runs.
pub fn newer_on_agent<'a>(node: &HostedNode, agent: Option<&'a Agent>) -> Option<&'a str> {
    let agent = agent.filter(|a| agent_state(a) == AgentState::Ready)?;
    let shipped = agent.description.as_ref()?.node_version.as_str();
    (compare(&node.running_version, shipped)? == Ordering::Less).then_some(shipped)
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

/// One orchestrator pass's step of a rolling upgrade: asks as many nodes that are
/// behind to upgrade as the share leaves room for beside those still upgrading,
/// and ends the upgrade (deletes its record) once none is behind or upgrading.
/// Returns whether it wrote anything (the pass then reads the nodes again).
pub async fn pace(
    store: &Store,
    nodes: &[(u64, HostedNode)],
    agents: &[Agent],
) -> Result<bool, StoreError> {
    let Some((version, rolling)) = store.get::<RollingUpgrade>(keys::ROLLING_UPGRADE)? else {
        return Ok(false);
    };
    let by_id: HashMap<&str, &Agent> = agents.iter().map(|a| (a.id.as_str(), a)).collect();
    let upgrading = nodes
        .iter()
        .filter(|(_, n)| !n.upgrade_task.is_empty())
        .count();
    let behind: Vec<&(u64, HostedNode)> = nodes
        .iter()
        .filter(|(_, n)| {
            serving(n) && newer_on_agent(n, by_id.get(n.agent_id.as_str()).copied()).is_some()
        })
        .collect();
    if behind.is_empty() && upgrading == 0 {
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
    let wanted = nodes.iter().filter(|(_, n)| n.desired_running).count();
    let room = at_once(wanted, rolling.max_share_percent).saturating_sub(upgrading);
    if room == 0 || behind.is_empty() {
        return Ok(false);
    }
    let mut txn = TxnBuilder::new();
    for (v, n) in behind.into_iter().take(room) {
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

    #[test]
    fn a_share_restarts_at_least_one_node() {
        assert_eq!(at_once(3, 10), 1);
        assert_eq!(at_once(30, 10), 3);
        assert_eq!(at_once(0, 10), 1);
        assert_eq!(at_once(4, 50), 2);
    }
}
