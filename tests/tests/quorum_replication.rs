//! Three managers: a write made through any manager, leader or follower, is readable
//! through every manager; a follower killed with -9 restarts from its data directory
//! and catches up on what it missed.

use std::time::Duration;

use lnswarm_tests::{cluster::ManagerCluster, process::run};

fn network_of(cluster: &ManagerCluster, i: usize) -> String {
    let mut cmd = cluster.ctl(i);
    cmd.args(["cluster", "info", "--format", "json"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "cluster info through m{i}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["settings"]["network"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_any_manager_are_read_through_every_manager() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let members = cluster.members(0).await.expect("manager ls");
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(
        members.iter().filter(|m| m.leader).count(),
        1,
        "{members:?}"
    );
    let leader = cluster.leader().await;

    // Settings written through each manager in turn are read back through every
    // manager at once: Control reads are linearizable.
    for (i, network) in [(0, "signet"), (1, "testnet"), (2, "regtest")] {
        let mut cmd = cluster.ctl(i);
        cmd.args(["cluster", "update", "--network", network]);
        let (status, _, err) = run(cmd);
        assert!(
            status.success(),
            "update through m{i} (leader m{leader}): {err}"
        );
        for j in 0..3 {
            assert_eq!(network_of(&cluster, j), network, "read through m{j}");
        }
    }

    // Certificates issued through each manager are known to every manager.
    let token = cluster.worker_token(1).await;
    let mut written = Vec::new();
    for i in 0..3 {
        for _ in 0..3 {
            written.push(cluster.issue_worker(i, &token).await.expect("issue"));
        }
    }
    for j in 0..3 {
        cluster.wait_knows_all(j, &written).await;
    }

    // A follower killed with -9 misses writes, restarts from disk and catches up.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.kill9(follower);
    let survivor = (0..3).find(|i| *i != follower).unwrap();
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(cluster.issue_worker(survivor, &token).await.expect("issue"));
    }
    cluster.restart(follower, &[]);
    cluster.wait_knows_all(follower, &written).await;
    cluster.wait_knows_all(follower, &missed).await;
    lnswarm_tests::wait::until(
        "the restarted follower to be a reachable member",
        Duration::from_secs(30),
        || async {
            let m = cluster.members(follower).await?;
            (m.len() == 3 && m.iter().all(|m| m.reachable)).then_some(())
        },
    )
    .await;
}
