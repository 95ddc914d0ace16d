//! Snapshots and compaction: with a short log (compacted every 20 entries, a tail of
//! 5), a fourth manager that joins later and a follower that was down while the log
//! moved on both catch up from a snapshot streamed by the leader.

use std::time::Duration;

use lnswarm_tests::{cluster::ManagerCluster, wait};

const FLAGS: &[&str] = &["--snapshot-interval", "20", "--log-tail", "5"];

#[tokio::test(flavor = "multi_thread")]
async fn late_joiner_and_lagging_follower_catch_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, FLAGS).await;
    let token = cluster.worker_token(0).await;
    let leader = cluster.leader().await;
    let lagging = (0..3).find(|i| *i != leader).unwrap();
    cluster.kill9(lagging);

    let mut written = Vec::new();
    for n in 0..60 {
        let via = if n % 2 == 0 {
            leader
        } else {
            3 - leader - lagging
        };
        written.push(cluster.issue_worker(via, &token).await.expect("write"));
    }

    // The log was compacted past everything the lagging follower has.
    cluster.restart(lagging, &[]);
    cluster.wait_knows_all(lagging, &written).await;

    let fourth = cluster.join_one().await;
    cluster.wait_knows_all(fourth, &written).await;
    for i in [lagging, fourth] {
        let log = cluster.managers[i].proc.as_ref().unwrap().log_text();
        assert!(
            log.contains("installing a snapshot"),
            "m{i} should have caught up from a snapshot"
        );
    }

    // The four keep replicating.
    let more = cluster.issue_worker(fourth, &token).await.expect("write");
    for i in 0..4 {
        cluster.wait_knows_all(i, std::slice::from_ref(&more)).await;
    }
    wait::until(
        "four reachable members",
        Duration::from_secs(30),
        || async {
            let m = cluster.members(fourth).await?;
            (m.len() == 4 && m.iter().all(|m| m.reachable)).then_some(())
        },
    )
    .await;
}
