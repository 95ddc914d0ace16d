//! Pairing a new device, as an owner does it with two devices: the new one asks
//! (`node pair request`, with no credential), the paired one sees the request with
//! the same fingerprint and approves it (`node pair approve`, over the
//! SignerRequestsStream), and the new device then calls its node. A read-only
//! device reads but is refused what moves money; a refused or expired request
//! yields no credential.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use lnswarm_tests::{
    bin_path,
    hosting::{Hosted, HostingCluster, Owner},
    process::run,
    wait, Cluster,
};
use serde_json::Value;

/// `lnswarmctl node pair request` for `node_id` into `profile`, left running.
fn ask(c: &HostingCluster, profile: &Path, node_id: &str, device: &str, read_only: bool) -> Child {
    let mut cmd = Command::new(bin_path("lnswarmctl"));
    cmd.args(["--manager", &c.manager.manager_arg(), "--profile-dir"])
        .arg(profile)
        .args([
            "node",
            "pair",
            "request",
            node_id,
            "--device",
            device,
            "--ca-digest",
            &c.ca_digest(),
        ]);
    if read_only {
        cmd.arg("--read-only");
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lnswarmctl node pair request")
}

/// The asking device's outcome: (success, stdout, stderr).
fn outcome(child: Child) -> (bool, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The pending request of `device`, as the owner's `pair ls` shows it.
async fn pending(c: &HostingCluster, owner: &Owner, device: &str) -> Value {
    wait::until(
        &format!("{device}'s pairing request"),
        Duration::from_secs(30),
        || async {
            c.owner_json(owner, &["pair", "ls", "--format", "json"])
                .as_array()?
                .iter()
                .find(|p| p["device"] == device && p["state"] == "pending")
                .cloned()
        },
    )
    .await
}

/// The owner's device whose profile pairing wrote.
fn device(name: &str, profile: PathBuf, node_id: &str) -> Owner {
    Owner {
        name: name.into(),
        creds: lnswarm_common::credentials::Credentials::load(&profile).unwrap(),
        profile,
        node_id: node_id.into(),
        mnemonic: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paired_device_reaches_its_node_within_what_it_was_granted() {
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start(tmp.path(), 1).await;
    let Hosted { owner: alice, .. } = c.host("alice");

    // A full-access device: approved, it calls the node and can make an invoice.
    let phone_dir = tmp.path().join("profiles/phone");
    let phone = ask(&c, &phone_dir, &alice.node_id, "phone", false);
    let request = pending(&c, &alice, "phone").await;
    assert_eq!(request["access"], "full");
    let id = request["id"].to_string();
    let (ok, out, err) = c.owner_ctl(&alice, &["pair", "approve", &id]);
    assert!(ok, "approve: {out}{err}");
    assert!(out.contains("approved"), "{out}");
    let (ok, out, err) = outcome(phone);
    assert!(ok, "the phone's request: {out}{err}");
    // Both devices were shown the same fingerprint.
    assert!(
        out.contains(&format!(
            "fingerprint: {}",
            request["fingerprint"].as_str().unwrap()
        )),
        "{out}"
    );
    let phone = device("phone", phone_dir, &alice.node_id);
    let info = c.owner_json(&phone, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());
    let (ok, invoice, err) = c.owner_ctl(&phone, &["invoice", "1000"]);
    assert!(ok && invoice.starts_with("lnbcrt"), "{invoice}{err}");
    // Decided once: approving again says so.
    let (ok, _, err) = c.owner_ctl(&alice, &["pair", "approve", &id]);
    assert!(!ok && err.contains("approved already"), "{err}");

    // A read-only device reads, and is refused what pays, spends or changes.
    let tablet_dir = tmp.path().join("profiles/tablet");
    let tablet = ask(&c, &tablet_dir, &alice.node_id, "tablet", true);
    let request = pending(&c, &alice, "tablet").await;
    assert_eq!(request["access"], "read-only");
    let (ok, out, err) = c.owner_ctl(&alice, &["pair", "approve", &request["id"].to_string()]);
    assert!(ok, "approve: {out}{err}");
    let (ok, out, err) = outcome(tablet);
    assert!(ok, "the tablet's request: {out}{err}");
    let tablet = device("tablet", tablet_dir, &alice.node_id);
    assert_eq!(
        c.owner_json(&tablet, &["getinfo"])["node_id"],
        alice.node_id.as_str()
    );
    c.owner_json(&tablet, &["balances"]);
    c.owner_json(&tablet, &["info"]);
    for refused in [
        vec!["pay", invoice.trim()],
        vec!["invoice", "1000"],
        vec!["newaddr"],
        vec!["webhook", "ls"],
        vec!["pair", "ls"],
    ] {
        let (ok, out, err) = c.owner_ctl(&tablet, &refused);
        assert!(!ok, "a read-only device ran {refused:?}: {out}");
        assert!(
            err.contains("lightning-viewer") || err.contains("read-only"),
            "{refused:?}: {err}"
        );
    }

    // Refused: the asking device gets no credential.
    let evil_dir = tmp.path().join("profiles/evil");
    let evil = ask(&c, &evil_dir, &alice.node_id, "evil", false);
    let request = pending(&c, &alice, "evil").await;
    let (ok, out, err) = c.owner_ctl(
        &alice,
        &["pair", "approve", &request["id"].to_string(), "--refuse"],
    );
    assert!(ok && out.contains("refused"), "{out}{err}");
    let (ok, _, err) = outcome(evil);
    assert!(!ok && err.contains("refused"), "{err}");
    assert!(!evil_dir.exists(), "a refused device was given a profile");

    // Expired: unanswered past the cluster's pairing TTL, it yields nothing, and the
    // owner can no longer approve it.
    let mut update = Cluster::ctl(&c.manager);
    update.args(["cluster", "update", "--pairing-ttl", "2s"]);
    let (status, _, err) = run(update);
    assert!(status.success(), "{err}");
    let late_dir = tmp.path().join("profiles/late");
    let late = ask(&c, &late_dir, &alice.node_id, "late", false);
    let request = pending(&c, &alice, "late").await;
    let (ok, _, err) = outcome(late);
    assert!(!ok && err.contains("expired"), "{err}");
    assert!(!late_dir.exists(), "an expired request was given a profile");
    let (ok, _, err) = c.owner_ctl(&alice, &["pair", "approve", &request["id"].to_string()]);
    assert!(!ok && err.contains("expired"), "{err}");
}
