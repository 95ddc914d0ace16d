//! Leader changes as an owner sees them, on a quorum of three managers:
//! - a node that serves is reported as serving right after the leader is killed
//!   (its agent is UNKNOWN for a grace period, which is not DOWN), and lnswarmctl
//!   waits through the election instead of failing;
//! - a Schedule raced by a leader kill 50 to 150 ms later still ends with the node
//!   running, once.

use std::{process::Command, time::Duration};

use lnswarm_tests::{
    bin_path,
    hosting::{DuplicateWatch, Hosted, HostingCluster},
    process::run,
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_ride_through_leader_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = HostingCluster::start_quorum(dir.path(), 3, 2).await;
    let watch = DuplicateWatch::start(dir.path());

    let Hosted {
        owner: alice, uri, ..
    } = c.host("alice");

    // Kill the leader: alice serves on, and says so at once.
    let leader = c.manager.leader().await;
    let profile_managers = c.manager.manager_arg();
    c.manager.kill9(leader);
    for _ in 0..5 {
        let (ok, info, err) = c.owner_ctl(&alice, &["info"]);
        assert!(ok, "node info right after the kill: {err}");
        assert!(!err.contains("not READY"), "{err}");
        assert!(info.contains(&uri), "{info}");
        let again = c.schedule(&alice);
        assert_eq!(again, uri, "the same node, not restarted");
    }
    c.manager.restart(leader, &[]);

    // Schedule raced by a leader kill.
    for (round, delay_ms) in [50u64, 100, 150].into_iter().enumerate() {
        let owner = c.register(&format!("owner-{round}"));
        let leader = c.manager.leader().await;
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.args(["--manager", &profile_managers, "--profile-dir"])
            .arg(&owner.profile)
            .args(["node", "schedule"]);
        let schedule = std::thread::spawn(move || run(cmd));
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        c.manager.kill9(leader);
        let (status, out, err) = tokio::task::spawn_blocking(move || schedule.join().unwrap())
            .await
            .unwrap();
        // The answer may be lost with the leader; a second Schedule must then work.
        if !status.success() {
            let (ok, _, err2) = c.owner_ctl(&owner, &["schedule"]);
            assert!(ok, "round {round}: schedule after the kill: {err}\n{err2}");
        } else {
            assert!(out.trim().starts_with("https://"), "{out}");
        }
        let info = c.owner_json(&owner, &["getinfo"]);
        assert_eq!(info["node_id"], owner.node_id.as_str(), "round {round}");
        c.manager.restart(leader, &[]);
    }

    let violations = watch.finish();
    assert!(violations.is_empty(), "a node ran twice: {violations:?}");
}
