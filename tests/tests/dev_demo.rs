//! `lnswarmctl dev --demo`, the README's main job, runs to the end: a local cluster
//! starts, two nodes are registered and scheduled, one pays the other over a channel,
//! and everything is stopped afterwards.

use std::process::Command;

use lnswarm_tests::{bin_path, hosting::node_processes, process::run};

#[test]
fn dev_demo_runs_to_the_end_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let mut cmd = Command::new(bin_path("lnswarmctl"));
    cmd.args(["dev", "--demo", "--agents", "2", "--dir"])
        .arg(&dir);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "dev --demo failed:\n{out}\n{err}");
    for step in 1..=7 {
        assert!(
            out.contains(&format!("[{step}/7]")),
            "step {step} printed:\n{out}"
        );
    }
    assert!(out.contains("paid 25000000 msat"), "{out}");
    assert!(out.contains("demo complete"), "{out}");
    // The two nodes ran on different agents.
    let agents: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("running on agent ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(agents.len(), 2, "{out}");
    assert_ne!(agents[0], agents[1], "{out}");
    // Nothing is left running.
    assert!(node_processes(&dir).is_empty(), "hosted nodes left running");
    assert!(
        dir.join("logs").join("manager-1.log").exists(),
        "logs are kept in --dir"
    );
}
