//! lnswarmctl does not hurt its user: registering into a profile that already holds
//! a node refuses, says what would be lost and changes nothing; `--force` replaces
//! it. An invalid setting is refused, not reported as "updated".

use std::process::Command;

use lnswarm_tests::{bin_path, hosting::HostingCluster, process::run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_holding_a_node_is_not_replaced_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start(tmp.path(), 0).await;
    let alice = c.register("alice");
    let before = std::fs::read(alice.profile.join("profile.json")).unwrap();
    let cert_before = std::fs::read(alice.profile.join("cert.pem")).unwrap();

    let again = |force: bool| {
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.args(["--manager", &c.manager.addr, "--profile-dir"])
            .arg(&alice.profile)
            .args(["node", "register", "--ca-digest", &c.ca_digest(), "--app"])
            .arg(tmp.path().join("app"));
        if force {
            cmd.arg("--force");
        }
        run(cmd)
    };
    let (status, out, err) = again(false);
    assert!(
        !status.success(),
        "a second register into the profile must refuse: {out}"
    );
    assert!(
        err.contains(&alice.node_id) && err.contains("--force") && err.contains("mnemonic"),
        "says which node and how: {err}"
    );
    assert_eq!(
        std::fs::read(alice.profile.join("profile.json")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(alice.profile.join("cert.pem")).unwrap(),
        cert_before
    );

    let (status, out, err) = again(true);
    assert!(status.success(), "--force replaces it: {out}{err}");
    let new_id = out
        .lines()
        .find_map(|l| l.strip_prefix("node id: "))
        .unwrap();
    assert_ne!(new_id, alice.node_id, "a new node in the profile");

    // An invalid setting is refused and nothing is stored.
    let mut cmd = c.manager.ctl();
    cmd.args(["cluster", "update", "--cert-expiry", "5s"]);
    let (status, out, err) = run(cmd);
    assert!(
        !status.success(),
        "a lifetime under the floor is refused: {out}"
    );
    assert!(err.contains("certificate expiry"), "{err}");
}

/// Errors read as what went wrong and what to check, not as gRPC or transport
/// internals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_went_wrong_in_plain_words() {
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start(tmp.path(), 0).await;

    let mut cmd = c.manager.ctl();
    cmd.args(["agent", "inspect", "no-such-agent"]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("not found: no agent \"no-such-agent\""),
        "names what was not found: {err}"
    );
    assert!(
        !err.contains("Some requested entity"),
        "no gRPC code text: {err}"
    );

    // A manager address where nothing listens (a port just freed).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let mut cmd = c.manager.ctl();
    cmd.args(["--manager", &addr, "agent", "ls"]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains(&addr)
            && err.contains("is the manager running")
            && err.contains("LNSWARM_MANAGER"),
        "says where and what to check: {err}"
    );
    assert!(
        !err.contains("transport error"),
        "no transport internals: {err}"
    );

    // `node info --wait` says that it waits, and gives up when told to (no agent
    // here can run the node).
    let alice = c.register("alice");
    let (ok, _, err) = c.owner_ctl(&alice, &["info", "--wait", "--timeout", "3s"]);
    assert!(!ok, "a node that cannot run is not waited for forever");
    assert!(
        err.contains("waiting for node"),
        "progress while it waits: {err}"
    );
    assert!(
        err.contains("did not run within 3s")
            && err.contains(&format!(
                "lnswarmctl --profile-dir {} node schedule",
                alice.profile.display()
            )),
        "says what to do next: {err}"
    );

    // `node register` follows the cluster's network unless told otherwise.
    let mut cmd = c.manager.ctl();
    cmd.args(["cluster", "update", "--network", "signet"]);
    let (status, _, err) = run(cmd);
    assert!(status.success(), "cluster update --network signet: {err}");
    let carol = c.register("carol");
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(carol.profile.join("profile.json")).unwrap())
            .unwrap();
    assert_eq!(
        profile["network"], "signet",
        "the cluster's network: {profile}"
    );

    // Shell completion, from clap.
    let mut cmd = Command::new(bin_path("lnswarmctl"));
    cmd.args(["completion", "bash"]);
    let (status, out, _) = run(cmd);
    assert!(status.success());
    assert!(
        out.contains("complete -F _lnswarmctl"),
        "a bash completion script: {out:.200}"
    );
}
