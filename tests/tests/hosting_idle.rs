//! Idle hosted nodes: a node with no channels, no pending payments and no owner
//! calls for the cluster's idle period is stopped (its slot freed) and Schedule
//! brings it back; nodes with a channel keep running however quiet they are,
//! because they must keep watching the chain.

use std::time::Duration;

use lnswarm_tests::{hosting::HostingCluster, process::run, wait, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_node_without_channels_is_stopped_and_schedule_brings_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start(tmp.path(), 1).await;
    let mut update = Cluster::ctl(&c.manager);
    update.args(["cluster", "update", "--idle-stop", "20s"]);
    let (status, _, err) = run(update);
    assert!(status.success(), "{err}");

    let alice = c.host("alice").owner;
    let bob = c.host("bob").owner;
    let carol = c.host("carol").owner;
    c.funded_channel(&bob, &carol).await;

    let stopped = wait::until(
        "alice's idle node to stop",
        Duration::from_secs(120),
        || async {
            let node = c.try_inspect(&alice.node_id)?;
            (node["state"] == "stopped").then_some(node)
        },
    )
    .await;
    assert!(
        stopped["message"]
            .as_str()
            .unwrap_or_default()
            .contains("idle"),
        "{stopped}"
    );
    wait::until(
        "alice's process to exit",
        Duration::from_secs(30),
        || async { c.node_pids(&alice).is_empty().then_some(()) },
    )
    .await;

    // Longer than the idle period with no owner call: the channel keeps them up.
    tokio::time::sleep(Duration::from_secs(25)).await;
    for owner in [&bob, &carol] {
        let node = c.inspect(&owner.node_id);
        assert_eq!(node["state"], "running", "{}: {node}", owner.name);
        assert_eq!(c.node_pids(owner).len(), 1, "{}", owner.name);
    }

    // Schedule starts the idle node again, with the same identity.
    c.schedule(&alice);
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());
    assert_eq!(c.inspect(&alice.node_id)["state"], "running");
}
