//! Membership through `lnswarmctl manager`: removing a manager refuses to break
//! quorum without --force; a removed manager leaves the list and its certificate is
//! refused from then on. `lnswarm-manager run --force-new-cluster` turns the lone
//! survivor of a lost quorum into a one-member cluster that keeps every committed
//! change.

use std::time::Duration;

use lnswarm_common::{
    api::{raft_client::RaftClient, GetStatusRequest},
    credentials::Credentials,
    pki::Role,
    tls,
};
use lnswarm_tests::{cluster::ManagerCluster, process::run, wait};

/// Whether manager `addr` accepts a manager-only call from `creds`.
async fn accepts_manager_cert(addr: &str, creds: &Credentials) -> bool {
    let Ok(client_tls) = creds.client_tls() else {
        return false;
    };
    let Ok(channel) = tls::connect(addr, &client_tls, Role::Manager).await else {
        return false;
    };
    RaftClient::new(channel)
        .get_status(GetStatusRequest {})
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_refuses_to_break_quorum_and_revokes_the_removed_manager() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (removed, down) = (followers[0], followers[1]);
    let removed_id = cluster.managers[removed].id();
    let removed_creds =
        Credentials::load(&cluster.managers[removed].data_dir.join("credentials")).unwrap();
    assert!(accepts_manager_cert(&cluster.managers[leader].addr, &removed_creds).await);

    // With one follower down, removing the other would leave 1 of 2: refused.
    cluster.kill9(down);
    let mut cmd = cluster.ctl(leader);
    cmd.args(["manager", "remove", &removed_id]);
    let (status, _, err) = run(cmd);
    assert!(
        !status.success(),
        "removal that breaks quorum must be refused"
    );
    assert!(err.contains("quorum"), "{err}");
    assert_eq!(cluster.members(leader).await.unwrap().len(), 3);

    cluster.restart(down, &[]);
    wait::until(
        "three reachable members",
        Duration::from_secs(60),
        || async {
            let m = cluster.members(leader).await?;
            (m.len() == 3 && m.iter().all(|m| m.reachable)).then_some(())
        },
    )
    .await;
    let mut cmd = cluster.ctl(down);
    cmd.args(["manager", "remove", &removed_id]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "remove through a follower: {out}{err}");

    for i in [leader, down] {
        let members = cluster.members(i).await.expect("manager ls");
        assert_eq!(members.len(), 2, "{members:?}");
        assert!(members.iter().all(|m| m.id != removed_id));
        assert!(
            !accepts_manager_cert(&cluster.managers[i].addr, &removed_creds).await,
            "m{i} still accepts the removed manager's certificate"
        );
    }
    // The removed manager no longer answers for the cluster: its reads fail
    // rather than show state it can no longer keep current.
    let mut cmd = cluster.ctl(removed);
    cmd.args(["agent", "ls"]);
    let (status, out, err) = run(cmd);
    assert!(
        !status.success(),
        "a removed manager answered agent ls: {out}"
    );
    assert!(
        err.contains("removed from the cluster"),
        "says why it cannot answer: {err}"
    );
    // The two remaining managers still make progress.
    let token = cluster.worker_token(leader).await;
    let w = cluster.issue_worker(down, &token).await.expect("write");
    cluster
        .wait_knows_all(leader, std::slice::from_ref(&w))
        .await;

    // Removing the leader itself: it hands leadership over first.
    let leader_id = cluster.managers[leader].id();
    let mut cmd = cluster.ctl(down);
    cmd.args(["manager", "remove", &leader_id]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "remove the leader: {out}{err}");
    wait::until(
        "a one-member cluster led by the last manager",
        Duration::from_secs(60),
        || async {
            let m = cluster.members(down).await?;
            (m.len() == 1 && m[0].leader && m[0].addr == cluster.managers[down].addr).then_some(())
        },
    )
    .await;
    let w2 = cluster
        .issue_worker(down, &token)
        .await
        .expect("write after the leader left");
    cluster.wait_knows_all(down, &[w, w2]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn force_new_cluster_keeps_the_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let token = cluster.worker_token(0).await;
    let leader = cluster.leader().await;
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let mut written = Vec::new();
    for _ in 0..10 {
        written.push(cluster.issue_worker(leader, &token).await.expect("write"));
    }
    cluster.wait_knows_all(survivor, &written).await;

    // The quorum is lost for good: two of three are gone.
    for i in (0..3).filter(|i| *i != survivor) {
        cluster.kill9(i);
    }
    cluster.kill9(survivor);
    cluster.restart(survivor, &["--force-new-cluster"]);

    let survivor_id = cluster.managers[survivor].id();
    wait::until("a one-member cluster", Duration::from_secs(60), || async {
        let m = cluster.members(survivor).await?;
        (m.len() == 1 && m[0].id == survivor_id && m[0].leader).then_some(())
    })
    .await;
    cluster.wait_knows_all(survivor, &written).await;
    let w = cluster
        .issue_worker(survivor, &token)
        .await
        .expect("write after recovery");
    cluster
        .wait_knows_all(survivor, std::slice::from_ref(&w))
        .await;

    // It restarts from disk as the one-member cluster it now is.
    cluster.kill9(survivor);
    cluster.restart(survivor, &[]);
    written.push(w);
    cluster.wait_knows_all(survivor, &written).await;
}
