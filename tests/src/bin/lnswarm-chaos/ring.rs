//! The chaos run's cluster and its channels: 3 managers, 3 agents and N hosted
//! nodes, where node i opened a channel to node i+1 (mod N) and holds its balance,
//! so payments around the ring always have a direct route with liquidity.

use std::{path::Path, time::Duration};

use anyhow::Result;
use lnswarm_tests::{
    agents::set_heartbeat,
    cluster::ManagerCluster,
    hosting::{HostingCluster, Owner},
};

/// Each ring channel's size, in sats.
pub const CHANNEL_SATS: u64 = 500_000;

pub struct Ring {
    pub cluster: HostingCluster<ManagerCluster>,
    pub owners: Vec<Owner>,
    /// Channel i (node i → node i+1) by its channel point, the same at both ends.
    pub points: Vec<String>,
}

/// Starts the cluster with the heartbeat `heartbeat_ms` (TTL = 3 periods),
/// registers and schedules `n` nodes, funds them and opens the ring.
pub async fn build(dir: &Path, n: usize, heartbeat_ms: u64) -> Result<Ring> {
    let cluster = HostingCluster::start_quorum(dir, 3, 3).await;
    set_heartbeat(&cluster.manager, heartbeat_ms, 3).await;
    let mut owners = Vec::new();
    for i in 0..n {
        let o = cluster.register(&format!("n{i}"));
        cluster.schedule(&o);
        owners.push(o);
    }
    cluster.fund(&owners.iter().collect::<Vec<_>>()).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(cluster.open_channel(&owners[i], &owners[(i + 1) % n], CHANNEL_SATS));
    }
    cluster
        .regtest
        .mine_after_broadcast("the ring's funding transactions", n, 6)
        .await;
    let mut points = Vec::new();
    for i in 0..n {
        let (from, to) = (&owners[i], &owners[(i + 1) % n]);
        cluster.wait_channel_usable_both(from, to, &ids[i]).await;
        let point = cluster.channel_json(from, &ids[i])["funding_txo"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        points.push(point);
    }
    // Let the last commitment updates settle before the first reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Ring {
        cluster,
        owners,
        points,
    })
}
