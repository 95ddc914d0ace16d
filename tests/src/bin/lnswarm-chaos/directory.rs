//! Where the load and the checkers find things while faults move them: a Control
//! API client on whichever manager answers, and each hosted node's Node API client
//! at the address the cluster gives for it now. Owns nothing of the cluster, so it
//! runs beside the fault loop that kills and restarts its processes.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use anyhow::{anyhow, Context, Result};
use lnswarm_common::{
    api::{control_client::ControlClient, node_client::NodeClient, InspectHostedNodeRequest},
    credentials::Credentials,
};
use lnswarm_tests::{
    cluster::manager_channel,
    hosting::{node_client_at, Owner},
};
use tonic::transport::Channel;

/// How long one call may take before the load counts it as unanswered.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Directory {
    managers: Vec<String>,
    operator: Credentials,
    pub owners: Vec<Owner>,
    nodes: Mutex<HashMap<usize, NodeClient<Channel>>>,
    /// The manager tried first (the last one that answered).
    preferred: Mutex<usize>,
}

impl Directory {
    pub fn new(managers: Vec<String>, operator: Credentials, owners: Vec<Owner>) -> Directory {
        Directory {
            managers,
            operator,
            owners,
            nodes: Mutex::new(HashMap::new()),
            preferred: Mutex::new(0),
        }
    }

    /// A Control API client on the first manager that accepts a connection,
    /// starting with the one that answered last.
    pub async fn control(&self) -> Result<ControlClient<Channel>> {
        let first = *self.preferred.lock().unwrap();
        for k in 0..self.managers.len() {
            let i = (first + k) % self.managers.len();
            let connect = manager_channel(
                &self.managers[i],
                &self.operator.ca_pem,
                Some(&self.operator),
            );
            if let Ok(Some(ch)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                *self.preferred.lock().unwrap() = i;
                return Ok(ControlClient::new(ch));
            }
        }
        Err(anyhow!("no manager accepts a connection"))
    }

    /// Moves on to the next manager after one failed to answer.
    pub fn rotate_manager(&self) {
        let mut p = self.preferred.lock().unwrap();
        *p = (*p + 1) % self.managers.len();
    }

    /// Node `i`'s client: the cached one, or one at the address the cluster gives
    /// now.
    pub async fn node(&self, i: usize) -> Result<NodeClient<Channel>> {
        if let Some(c) = self.nodes.lock().unwrap().get(&i) {
            return Ok(c.clone());
        }
        let c = self.fresh_node(i).await?;
        self.nodes.lock().unwrap().insert(i, c.clone());
        Ok(c)
    }

    /// Forgets node `i`'s client after a failed call (the node may have moved).
    pub fn forget(&self, i: usize) {
        self.nodes.lock().unwrap().remove(&i);
    }

    /// A client for node `i` at the address the cluster gives now, uncached.
    pub async fn fresh_node(&self, i: usize) -> Result<NodeClient<Channel>> {
        let owner = &self.owners[i];
        let mut control = self.control().await?;
        let mut req = tonic::Request::new(InspectHostedNodeRequest {
            node_id: owner.node_id.clone(),
        });
        req.set_timeout(CALL_TIMEOUT);
        let node = match control.inspect_hosted_node(req).await {
            Ok(n) => n.into_inner(),
            Err(e) => {
                self.rotate_manager();
                return Err(anyhow!("inspect {}: {}", owner.name, e.message()));
            }
        };
        anyhow::ensure!(!node.grpc_uri.is_empty(), "{} has no address", owner.name);
        tokio::time::timeout(
            Duration::from_secs(3),
            node_client_at(&node.grpc_uri, owner),
        )
        .await
        .context("connect timed out")?
    }
}
