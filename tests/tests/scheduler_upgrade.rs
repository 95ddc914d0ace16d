//! MaybeUpgrade and rolling upgrades with real versions. The agents start nodes
//! from an `lnswarm-node` that says it is 0.0.1 (a script that answers
//! `--version` so and otherwise runs the built binary); the test then ships the
//! built one by replacing that file, as a package upgrade would. MaybeUpgrade
//! restarts the owner's node on it with its channel intact; an operator's
//! `node upgrade --all` then restarts the others never more than its share at
//! once; no node ever runs in two processes.

use std::{collections::HashMap, path::Path, time::Duration};

use lnswarm_common::api::{control_client::ControlClient, UpgradeHostedNodesRequest};
use lnswarm_tests::{
    agents::ctl_json,
    bin_path,
    hosting::{DuplicateWatch, HostingCluster, Owner},
    manager::TestManager,
    process::run,
    wait,
};
use serde_json::Value;
use tonic::Code;

const OLD: &str = "0.0.1";

/// Writes the `lnswarm-node` the agents run at `path`: one that reports `version`
/// (the built binary's own when `None`) and runs the built binary. Replaced by a
/// rename, as package managers do, so a running node keeps its file.
fn ship_node_binary(path: &Path, version: Option<&str>) {
    let real = bin_path("lnswarm-node");
    let answer = version.map_or(String::new(), |v| {
        format!("if [ \"$1\" = --version ]; then echo \"lnswarm-node {v}\"; exit 0; fi\n")
    });
    let script = format!("#!/bin/sh\n{answer}exec {} \"$@\"\n", real.display());
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The built lnswarm-node's version, as it prints it.
fn built_version() -> String {
    let mut cmd = std::process::Command::new(bin_path("lnswarm-node"));
    cmd.arg("--version");
    let (status, out, _) = run(cmd);
    assert!(status.success());
    out.split_whitespace().last().unwrap().to_string()
}

/// `node ls` as the operator sees it, by node id.
fn node_ls(c: &HostingCluster) -> HashMap<String, Value> {
    ctl_json(&c.manager, &["node", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

async fn wait_version(c: &HostingCluster, owner: &Owner, version: &str) {
    wait::until(
        &format!("{}'s node to serve on lnswarm-node {version}", owner.name),
        Duration::from_secs(120),
        || async {
            let n = c.try_inspect(&owner.node_id)?;
            (n["state"] == "running" && n["version"] == version && n["upgrading"] == false)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maybe_upgrade_restarts_an_older_node_with_its_channels_and_a_rolling_upgrade_keeps_to_its_share(
) {
    let tmp = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("LNSWARM_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap();
    let mut c = HostingCluster::start(tmp.path(), 2).await;
    // The agents start nodes from the old build.
    let binary = tmp.path().join("lnswarm-node");
    ship_node_binary(&binary, Some(OLD));
    for a in &mut c.agents {
        a.terminate();
        a.node_binary = Some(binary.clone());
        a.start();
    }
    c.wait_agents_ready().await;

    let owners: Vec<Owner> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|name| {
            let owner = c.register(name);
            c.schedule(&owner);
            owner
        })
        .collect();
    let [alice, bob, carol, dave] = &owners[..] else {
        unreachable!()
    };
    let channel = c.funded_channel(alice, bob).await;
    let point = c.channel_json(alice, &channel)["funding_txo"].clone();
    for o in &owners {
        assert_eq!(node_ls(&c)[&o.node_id]["version"], OLD, "{}", o.name);
    }
    // Nothing newer shipped yet.
    let (ok, out, err) = c.owner_ctl(alice, &["maybe-upgrade"]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to upgrade"), "{out}");

    let watch = DuplicateWatch::start(tmp.path());
    let new = built_version();
    assert_ne!(new, OLD);
    ship_node_binary(&binary, None);
    wait::until(
        "the agents to report the new lnswarm-node",
        Duration::from_secs(30),
        || async {
            ctl_json(&c.manager, &["agent", "ls"])
                .as_array()?
                .iter()
                .all(|a| a["node_version"] == new.as_str())
                .then_some(())
        },
    )
    .await;

    // The owner's MaybeUpgrade restarts the node on it, with its channel.
    let (ok, out, err) = c.owner_ctl(alice, &["maybe-upgrade"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("upgrading from {OLD}")), "{out}");
    wait_version(&c, alice, &new).await;
    let ls = node_ls(&c);
    for o in [bob, carol, dave] {
        assert_eq!(ls[&o.node_id]["version"], OLD, "{} was left alone", o.name);
    }
    c.wait_channel_usable(alice, &channel).await;
    assert_eq!(
        c.channel_json(alice, &channel)["funding_txo"],
        point,
        "the same channel"
    );
    c.pay(alice, bob, 1_000_000);
    c.pay(bob, alice, 1_000_000);
    let (ok, out, err) = c.owner_ctl(alice, &["maybe-upgrade"]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to upgrade"), "a second call: {out}");

    // The operator upgrades the other three, a quarter (one node) at a time.
    let mut cmd = c.manager.ctl();
    cmd.args(["node", "upgrade", "--all", "--max-share", "25"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("3 node(s) behind") && out.contains("at most 1 restarting"),
        "{out}"
    );
    let mut most_at_once = 0;
    let mut seen_restarting = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the rolling upgrade did not finish: {:?}",
            node_ls(&c)
        );
        let ls = node_ls(&c);
        let restarting = ls
            .values()
            .filter(|n| n["upgrading"] == true || n["state"] != "running")
            .count();
        most_at_once = most_at_once.max(restarting);
        seen_restarting += restarting;
        if restarting == 0 && ls.values().all(|n| n["version"] == new.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most_at_once, 1, "never more than the share at once");
    assert!(seen_restarting > 0, "the poller saw the restarts");

    // Bob restarted too: the same channel, usable at both ends.
    let bobs = c.channel_json(bob, point.as_str().unwrap())["channel_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_channel_usable(bob, &bobs).await;
    c.wait_channel_usable(alice, &channel).await;
    c.pay(alice, bob, 1_000_000);
    c.pay(bob, alice, 1_000_000);
    assert_eq!(watch.finish(), Vec::<String>::new(), "no node ran twice");
}

/// A share out of range is refused with its range, by the Control API and by
/// `cluster update`, and the cluster's setting stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_out_of_range_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = TestManager::init(tmp.path(), None).await;
    let mut control = ControlClient::new(m.channel_as(Some(&m.operator())).await);
    for share in [0, 101] {
        let err = control
            .upgrade_hosted_nodes(UpgradeHostedNodesRequest {
                max_share_percent: Some(share),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{share}: {err:?}");
        assert!(err.message().contains("between 1 and 100"), "{err:?}");
    }
    let mut cmd = m.ctl();
    cmd.args(["cluster", "update", "--upgrade-max-share", "0"]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains("between 1 and 100"), "{err}");
    let info = ctl_json(&m, &["cluster", "info"]);
    assert_eq!(info["settings"]["upgrade_max_share_percent"], 10, "{info}");
    // With nothing hosted, a rolling upgrade has nothing to do.
    let r = control
        .upgrade_hosted_nodes(UpgradeHostedNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.behind, r.at_once), (0, 1));
}
