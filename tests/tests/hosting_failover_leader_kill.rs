//! A leader kill during a failover, on a quorum of three managers: the agent that
//! runs a node is killed, and the leader is killed while the node waits for the
//! agent's lease to run out. The new leader counts the lease afresh and the node
//! ends up running exactly once, on the other agent. Throughout, no node id ever
//! runs in two processes.

use std::time::Duration;

use lnswarm_tests::{
    agents::set_heartbeat,
    hosting::{DuplicateWatch, Hosted, HostingCluster},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_kill_during_a_failover_ends_with_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = HostingCluster::start_quorum(tmp.path(), 3, 2).await;
    set_heartbeat(&c.manager, 1000, 3).await;
    let watch = DuplicateWatch::start(tmp.path());

    let Hosted {
        owner: alice,
        agent: first,
        ..
    } = c.host("alice");
    let i = c.agent_index(&first);

    c.agents[i].kill9();
    // Within the TTL: the old leader has not yet written the agent DOWN.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leader = c.manager.leader().await;
    c.manager.kill9(leader);

    c.wait_running(
        &alice,
        "alice to serve from the other agent",
        Duration::from_secs(120),
        |agent| agent != first,
    )
    .await;
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());
    assert_eq!(c.node_pids(&alice).len(), 1);
    c.manager.restart(leader, &[]);

    let violations = watch.finish();
    assert!(violations.is_empty(), "a node ran twice: {violations:?}");
}

/// A leader frozen (SIGSTOP) for two TTLs wakes with heartbeat timers that all
/// expired: its dispatcher's last writes (every agent DOWN) must die with its term
/// and not land on the new leader, or live agents' nodes would be moved while they
/// still run (the chaos run found this). Afterwards alice still runs once, on her
/// agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_frozen_and_thawed_moves_no_node() {
    use nix::{
        sys::signal::{kill, Signal},
        unistd::Pid,
    };
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start_quorum(tmp.path(), 3, 2).await;
    set_heartbeat(&c.manager, 1000, 3).await;
    let Hosted {
        owner: alice,
        agent: first,
        ..
    } = c.host("alice");
    let watch = DuplicateWatch::start(tmp.path());

    let leader = c.manager.leader().await;
    let pid = Pid::from_raw(c.manager.managers[leader].proc.as_ref().unwrap().pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    kill(pid, Signal::SIGCONT).unwrap();
    // Past the failover margin of any DOWN the thawed leader could have written.
    tokio::time::sleep(Duration::from_secs(5)).await;

    c.wait_running(
        &alice,
        "alice to serve again",
        Duration::from_secs(60),
        |_| true,
    )
    .await;
    let node = c.inspect(&alice.node_id);
    assert_eq!(
        node["agent_id"].as_str(),
        Some(first.as_str()),
        "alice was moved off a live agent: {node}"
    );
    assert_eq!(c.node_pids(&alice).len(), 1);
    let violations = watch.finish();
    assert!(violations.is_empty(), "a node ran twice: {violations:?}");
}
