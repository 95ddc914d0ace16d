//! 300 real agents join a 3-manager quorum at once (certificate, then session) and
//! become READY, and the leader stays leader throughout: the term does not change.

use std::{process::Command, time::Duration};

use lnswarm_tests::{
    agents::try_agent_states, bin_path, cluster::ManagerCluster, process::Proc, wait,
};

/// 300 in the suite; `LNSWARM_MASS_JOIN_AGENTS=1000` for a longer run by hand.
fn agents() -> usize {
    std::env::var("LNSWARM_MASS_JOIN_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_agents_join_at_once_without_a_leader_change() {
    let n = agents();
    let mut dir = tempfile::tempdir().unwrap();
    // `LNSWARM_KEEP_TEST_DIR=1` keeps the logs of a long run by hand.
    if std::env::var_os("LNSWARM_KEEP_TEST_DIR").is_some() {
        eprintln!("keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    let cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let leader = cluster.leader().await;
    let term = cluster.members(leader).await.unwrap()[0].term;
    let token = cluster.worker_token(leader).await;
    let addrs: Vec<String> = cluster.managers.iter().map(|m| m.addr.clone()).collect();

    // Every join at once, spread over the managers as agents' configs would be.
    let joins: Vec<std::process::Child> = (0..n)
        .map(|i| {
            Command::new(bin_path("lnswarm-agent"))
                .args(["join", "--data-dir"])
                .arg(dir.path().join(format!("a{i}")))
                .args(["--token", &token, "--manager", &addrs[i % addrs.len()]])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let failed = tokio::task::spawn_blocking(move || {
        joins
            .into_iter()
            .map(|mut c| c.wait().unwrap())
            .filter(|s| !s.success())
            .count()
    })
    .await
    .unwrap();
    assert_eq!(failed, 0, "every agent joined");

    // Every agent starts at once.
    let mut running = Vec::new();
    for i in 0..n {
        let mut cmd = Command::new(bin_path("lnswarm-agent"));
        cmd.args(["run", "--data-dir"])
            .arg(dir.path().join(format!("a{i}")))
            .env("RUST_LOG", "warn");
        running.push(Proc::spawn(&format!("a{i}"), cmd, dir.path()));
    }
    wait::until("every agent READY", Duration::from_secs(180), || async {
        let ready = try_agent_states(&cluster)?
            .iter()
            .filter(|(_, s)| s == "READY")
            .count();
        (ready == n).then_some(())
    })
    .await;

    let members = cluster.members(leader).await.unwrap();
    let now_leader = cluster.leader().await;
    assert_eq!(now_leader, leader, "the leader kept its leadership");
    assert!(
        members.iter().all(|m| m.term == term),
        "the term did not change: {term} then {members:?}"
    );
    for p in running.iter_mut() {
        p.kill9();
    }
}
