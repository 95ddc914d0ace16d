//! kill -9 the leader of three managers under a steady stream of writes: a new
//! leader is elected, writes go on, and every write acknowledged before, during
//! and after is on every survivor; the killed manager restarts from disk and
//! catches up.

use std::time::Duration;

use lnswarm_tests::{
    cluster::{ManagerCluster, SteadyWriter},
    wait,
};

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_under_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let token = cluster.worker_token(0).await;
    let old_leader = cluster.leader().await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();

    // Writes go through the two followers (forwarded to the leader) and keep going
    // through whichever of them leads after the kill.
    let writer = SteadyWriter::start(
        survivors.iter().map(|i| cluster.target(*i)).collect(),
        token,
    );
    writer.wait_acked(15, "writes before the kill").await;
    cluster.kill9(old_leader);
    let at_kill = writer.acked_count();
    writer
        .wait_acked(at_kill + 30, "writes to go on after the leader was killed")
        .await;
    let written = writer.stop().await;

    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    assert!(survivors.contains(&new_leader));
    for i in &survivors {
        cluster.wait_knows_all(*i, &written).await;
    }

    // The killed manager restarts from its data directory and catches up.
    cluster.restart(old_leader, &[]);
    cluster.wait_knows_all(old_leader, &written).await;
    wait::until(
        "all three managers reachable again",
        Duration::from_secs(60),
        || async {
            let m = cluster.members(old_leader).await?;
            (m.len() == 3 && m.iter().all(|m| m.reachable)).then_some(())
        },
    )
    .await;
}
