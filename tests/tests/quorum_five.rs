//! Five managers survive two simultaneous kills (the leader among them): writes go
//! on and every acknowledged write is on the three survivors.

use lnswarm_tests::cluster::{ManagerCluster, SteadyWriter};

#[tokio::test(flavor = "multi_thread")]
async fn five_managers_survive_two_simultaneous_kills() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 5, &[]).await;
    let token = cluster.worker_token(0).await;
    let leader = cluster.leader().await;
    let victim = (0..5).find(|i| *i != leader).unwrap();
    let survivors: Vec<usize> = (0..5).filter(|i| *i != leader && *i != victim).collect();

    let writer = SteadyWriter::start(
        survivors.iter().map(|i| cluster.target(*i)).collect(),
        token,
    );
    writer.wait_acked(10, "writes before the kills").await;
    cluster.kill9(leader);
    cluster.kill9(victim);
    let at_kill = writer.acked_count();
    writer
        .wait_acked(
            at_kill + 20,
            "writes to go on after two of five were killed",
        )
        .await;
    let written = writer.stop().await;

    let new_leader = cluster.leader().await;
    assert!(survivors.contains(&new_leader));
    for i in &survivors {
        cluster.wait_knows_all(*i, &written).await;
    }
}
