//! Kill two of three managers: writes and linearizable reads through the survivor
//! fail with UNAVAILABLE in bounded time (never hang), and its gRPC health says
//! NOT_SERVING; once one manager returns, health is SERVING again, writes succeed
//! and nothing acknowledged was lost.

use std::time::Duration;

use lnswarm_common::{api::GetClusterInfoRequest, pki::Role, tls};
use lnswarm_tests::cluster::ManagerCluster;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// What manager `i`'s gRPC health says of `service` ("" is the whole server),
/// asked without a certificate as a load balancer would.
async fn health(cluster: &ManagerCluster, i: usize, service: &str) -> Option<ServingStatus> {
    let tls = tls::client_config(&cluster.ca_pem(), None).ok()?;
    let channel = tls::connect(&cluster.managers[i].addr, &tls, Role::Manager)
        .await
        .ok()?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

async fn wait_health(cluster: &ManagerCluster, i: usize, want: ServingStatus) {
    lnswarm_tests::wait::until(
        &format!("manager {i}'s health to be {want:?}"),
        Duration::from_secs(60),
        || async {
            for service in ["", "lnswarm.v1.Control", "lnswarm.v1.Dispatcher"] {
                if health(cluster, i, service).await? != want {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_fail_without_quorum_and_resume_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let token = cluster.worker_token(0).await;
    let leader = cluster.leader().await;
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let mut written = vec![cluster.issue_worker(survivor, &token).await.expect("write")];
    wait_health(&cluster, survivor, ServingStatus::Serving).await;

    let others: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    for i in &others {
        cluster.kill9(*i);
    }
    // Cut off from its quorum, it says so; raft itself still answers.
    wait_health(&cluster, survivor, ServingStatus::NotServing).await;
    assert_eq!(
        health(&cluster, survivor, "lnswarm.v1.Raft").await,
        Some(ServingStatus::Serving)
    );

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
    wait_health(&cluster, survivor, ServingStatus::Serving).await;
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
