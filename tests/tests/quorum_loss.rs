//! Kill two of three managers: writes and linearizable reads through the survivor
//! fail with UNAVAILABLE in bounded time (never hang); once one manager returns,
//! writes succeed again and nothing acknowledged was lost.

use std::time::Duration;

use lnswarm_common::api::GetClusterInfoRequest;
use lnswarm_tests::cluster::ManagerCluster;

#[tokio::test(flavor = "multi_thread")]
async fn writes_fail_without_quorum_and_resume_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let token = cluster.worker_token(0).await;
    let leader = cluster.leader().await;
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let mut written = vec![cluster.issue_worker(survivor, &token).await.expect("write")];

    let others: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    for i in &others {
        cluster.kill9(*i);
    }

    // A bound far above the store's own deadline: the call must come back, refused.
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        cluster.issue_worker(survivor, &token),
    )
    .await
    .expect("a write without quorum must not hang");
    let status = refused.expect_err("a write without quorum must fail");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let mut control = cluster.control(survivor).await.expect("control");
    let read = tokio::time::timeout(
        Duration::from_secs(60),
        control.get_cluster_info(GetClusterInfoRequest {}),
    )
    .await
    .expect("a read without quorum must not hang");
    assert_eq!(
        read.expect_err("a linearizable read without quorum must fail")
            .code(),
        tonic::Code::Unavailable
    );

    // One manager returns: the two have a quorum again.
    cluster.restart(others[0], &[]);
    let w = lnswarm_tests::wait::until(
        "a write to succeed once quorum is back",
        Duration::from_secs(60),
        || async { cluster.issue_worker(survivor, &token).await.ok() },
    )
    .await;
    written.push(w);
    written.push(
        cluster
            .issue_worker(others[0], &token)
            .await
            .expect("write"),
    );
    cluster.wait_knows_all(survivor, &written).await;
    cluster.wait_knows_all(others[0], &written).await;
}
