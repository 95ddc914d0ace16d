//! Schedule and GetNodeInfo: ask for a node to run and wait for the orchestrator's
//! verdict (running, or unavailable and why) on the node's watch tag.

use std::time::Duration;

use lnswarm_common::{
    api::{HostedNode, HostedNodeState, NodeInfoResponse},
    tls::ClientTls,
};
use tokio::time::Instant;

use crate::{
    cluster::ClusterError,
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

/// How long Schedule and a waiting GetNodeInfo wait for a node to serve.
pub const WAIT_LIMIT: Duration = Duration::from_secs(90);

/// Why a node is not running for the caller: a verdict on it, or a failure.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("this node is not registered")]
    NotRegistered,
    #[error("this node was exported (ExportNode) and can never run in this cluster again; run it from its export")]
    Exported,
    /// The orchestrator's verdict, after the caller asked.
    #[error("node cannot run now: {0}")]
    CannotRun(String),
    #[error("node is not running: {0}")]
    NotRunning(String),
    #[error("node did not start within {secs}s: {message}")]
    TimedOut { secs: u64, message: String },
    #[error("manager is shutting down")]
    ShuttingDown,
    #[error("bad node id in store")]
    BadNodeId,
    #[error("cluster CA: {0}")]
    ClusterCa(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn info(node: &HostedNode) -> Result<NodeInfoResponse, ScheduleError> {
    Ok(NodeInfoResponse {
        node_id: hex::decode(&node.node_id).map_err(|_| ScheduleError::BadNodeId)?,
        grpc_uri: node.grpc_uri.clone(),
        agent_id: node.agent_id.clone(),
        task_id: node.task_id.clone(),
    })
}

fn is_running(node: &HostedNode) -> bool {
    node.state == HostedNodeState::Running as i32 && !node.grpc_uri.is_empty()
}

/// Whether the node's Node API answers gRPC health with SERVING. The store's task
/// state can lag a restart (states only move forward), so Schedule asks the node.
async fn serves(tls: &ClientTls, node: &HostedNode) -> bool {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let addr = node.grpc_uri.trim_start_matches("https://");
    let probe = async {
        let channel = lnswarm_common::tls::connect(
            addr,
            tls,
            lnswarm_common::tls::ServerIdentity::exact(
                lnswarm_common::pki::Role::Node,
                &node.node_id,
            ),
        )
        .await
        .ok()?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?
            .into_inner()
            .status;
        Some(status == ServingStatus::Serving as i32)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Some(true))
    )
}

fn load(store: &Store, node_id: &str) -> Result<(u64, HostedNode), ScheduleError> {
    store
        .get::<HostedNode>(&keys::hosted_node(node_id))?
        .ok_or(ScheduleError::NotRegistered)
}

/// How the manager reaches hosted nodes' health: trusting the cluster CA, no
/// client certificate (health is open). Built once per call, not per probe.
fn node_tls(store: &Store) -> Result<ClientTls, ScheduleError> {
    let (_, record) = crate::cluster::load(store)?;
    lnswarm_common::tls::client_config(&crate::cluster::trust_bundle(&record), None)
        .map_err(|e| ScheduleError::ClusterCa(e.to_string()))
}

/// Marks the node wanted and waits until it serves. UNAVAILABLE with the reason if
/// the orchestrator finds nowhere to run it.
pub async fn schedule(store: &Store, node_id: &str) -> Result<NodeInfoResponse, ScheduleError> {
    let key = keys::hosted_node(node_id);
    let tls = node_tls(store)?;
    let (served, asked_at) = store
        .update("the hosted node", |store| {
            let (version, mut node) = load(store, node_id)?;
            if node.state == HostedNodeState::Exported as i32
                || node.state == HostedNodeState::Exporting as i32
            {
                return Err(ScheduleError::Exported);
            }
            if node.desired_running && is_running(&node) {
                return Ok(Attempt::Done(Some(node)));
            }
            node.desired_running = true;
            // A fresh state makes the orchestrator write its verdict even if it
            // matches the previous one.
            node.state = HostedNodeState::Scheduled as i32;
            node.message = "scheduling".into();
            let txn = TxnBuilder::new()
                .require_version(&key, version)
                .put_tagged(&key, &node, [keys::node_tag(node_id)])
                .build();
            Ok(Attempt::Propose(txn, None))
        })
        .await?;
    if let Some(node) = served {
        if serves(&tls, &node).await {
            return info(&node);
        }
    }
    wait_with(store, &tls, node_id, Some(asked_at)).await
}

/// Waits until the node serves. With `fail_after = Some(index)`, a verdict of
/// unavailable written after that index ends the wait with UNAVAILABLE.
pub async fn wait(
    store: &Store,
    node_id: &str,
    fail_after: Option<u64>,
) -> Result<NodeInfoResponse, ScheduleError> {
    wait_with(store, &node_tls(store)?, node_id, fail_after).await
}

async fn wait_with(
    store: &Store,
    tls: &ClientTls,
    node_id: &str,
    fail_after: Option<u64>,
) -> Result<NodeInfoResponse, ScheduleError> {
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut changes = store.state().watch().subscribe(&keys::node_tag(node_id));
    // Running by the store but not serving yet: asked again soon, then less often.
    let mut serve_recheck = Duration::from_millis(20);
    loop {
        let (version, node) = load(store, node_id)?;
        let running = is_running(&node);
        if running && serves(tls, &node).await {
            return info(&node);
        }
        let verdict = fail_after.is_some_and(|i| version > i)
            && matches!(
                HostedNodeState::try_from(node.state),
                Ok(HostedNodeState::Unavailable | HostedNodeState::Stopped)
            );
        if verdict {
            return Err(ScheduleError::CannotRun(node.message));
        }
        let recheck = if running {
            let r = serve_recheck;
            serve_recheck = (serve_recheck * 2).min(Duration::from_millis(250));
            r
        } else {
            WAIT_LIMIT
        };
        tokio::select! {
            r = changes.changed() => if r.is_err() {
                return Err(ScheduleError::ShuttingDown);
            },
            _ = tokio::time::sleep(recheck) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(ScheduleError::TimedOut {
                    secs: WAIT_LIMIT.as_secs(),
                    message: node.message,
                });
            }
        }
    }
}

/// GetNodeInfo without waiting: where it runs, or UNAVAILABLE and why not.
pub fn current(store: &Store, node_id: &str) -> Result<NodeInfoResponse, ScheduleError> {
    let (_, node) = load(store, node_id)?;
    if is_running(&node) {
        return info(&node);
    }
    let why = if !node.message.is_empty() {
        node.message.clone()
    } else {
        match HostedNodeState::try_from(node.state) {
            Ok(HostedNodeState::Registered) => "it is not scheduled".to_string(),
            Ok(HostedNodeState::Stopped) => "it is stopped".to_string(),
            Ok(HostedNodeState::Exported) => "it was exported".to_string(),
            _ => format!("it is starting on agent {}", node.agent_id),
        }
    };
    Err(ScheduleError::NotRunning(why))
}
