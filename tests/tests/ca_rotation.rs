//! Root CA rotation under load: while the cluster moves every manager, agent and
//! hosted node to a new root, the agents stay READY and the nodes pay each other
//! both ways; once `lnswarmctl cluster ca` says it is done, a certificate from the
//! old root is refused, the old worker token is refused with the reason, a new
//! agent joins with the new token, and the nodes still pay. An operator's own
//! root must name the cluster.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lnswarm_common::{
    api::{ca_client::CaClient, NodeCertificateStatusRequest},
    credentials::Credentials,
    pki::{ca_digest, issued_by, Role},
    tls,
};
use lnswarm_tests::{
    agents::{ctl_json, set_heartbeat, try_agent_states, worker_token, TestAgent},
    bin_path,
    certs::TestCa,
    hosting::HostingCluster,
    process::run,
    wait, Cluster,
};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_root_ca_rotates_while_the_nodes_pay() {
    let tmp = lnswarm_tests::keepable_tempdir();
    let c = HostingCluster::start_quorum_with(tmp.path(), 3, 2, &["--cert-expiry", "60s"]).await;
    // Sessions and nodes' connections reopen on renewed certificates during the
    // rotation; a 3 s TTL leaves that room on a loaded machine (as cert_renewal).
    set_heartbeat(&c.manager, 1000, 3).await;
    let alice = c.register("alice");
    let bob = c.register("bob");
    for o in [&alice, &bob] {
        c.schedule(o);
    }
    c.funded_channel(&alice, &bob).await;

    // Kept from before the rotation: an agent's certificate and the worker token.
    let old_agent = c.agents[0].credentials();
    let old_token = worker_token(&c.manager);
    let before = ctl_json(&c.manager, &["cluster", "ca"]);
    assert_eq!(before["phase"], "none", "{before}");
    assert_eq!(before["root_ca_digest"], c.ca_digest().as_str(), "{before}");

    let started = ctl_json(&c.manager, &["cluster", "ca", "--rotate"]);
    assert_eq!(started["phase"], "rotating", "{started}");
    let new_digest = started["new_root_ca_digest"].as_str().unwrap().to_string();
    assert_ne!(new_digest, c.ca_digest(), "a new root");
    let mut again = Cluster::ctl(&c.manager);
    again.args(["cluster", "ca", "--rotate"]);
    let (status, _, err) = run(again);
    assert!(
        !status.success() && err.contains("already in progress"),
        "a second rotation while one runs is refused: {err}"
    );

    // Pay both ways and watch the agents until the rotation is done.
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut payments, mut not_ready, mut seen_rotating) = (0, Vec::new(), Vec::new());
    let done = loop {
        assert!(
            Instant::now() < deadline,
            "the rotation did not finish; last seen: {seen_rotating:?}"
        );
        c.pay(&alice, &bob, 1_000_000);
        c.pay(&bob, &alice, 500_000);
        payments += 2;
        match try_agent_states(&c.manager) {
            Some(states) if states.len() == 2 && states.iter().all(|(_, s)| s == "READY") => {}
            other => not_ready.push(format!("{other:?}")),
        }
        let status = ctl_json(&c.manager, &["cluster", "ca"]);
        if status["phase"] == "done" {
            break status;
        }
        assert_eq!(status["phase"], "rotating", "{status}");
        seen_rotating.push(status["on_old_root"].clone());
    };
    assert!(not_ready.is_empty(), "agents left READY: {not_ready:?}");
    assert!(
        !seen_rotating.is_empty(),
        "the nodes paid while the rotation was in progress"
    );
    assert_eq!(done["root_ca_digest"], new_digest.as_str(), "{done}");
    let info = ctl_json(&c.manager, &["cluster", "info"]);
    assert_eq!(info["root_ca_digest"], new_digest.as_str(), "{info}");
    eprintln!("{payments} payments during the rotation; holders on the old root as it went: {seen_rotating:?}");

    // The owners' devices were renewed from the new root as lnswarmctl used them.
    let new_root = tls::fetch_root_ca_unverified(&c.manager.any_addr())
        .await
        .unwrap();
    assert_eq!(
        ca_digest(&tls::certs_from_pem(&new_root).unwrap()[0]),
        new_digest
    );
    for o in [&alice, &bob] {
        let device = Credentials::load(&o.profile).unwrap();
        assert!(
            issued_by(&device.cert_pem, &new_root),
            "{}'s device certificate is from the new root",
            o.name
        );
    }

    // A certificate from the old root is refused by every manager, for its root,
    // once it has applied the end of the rotation (followers apply it a moment
    // after the leader).
    // Trusting what the operator trusts now, to reach the managers.
    let stale = Credentials {
        ca_pem: c.manager.operator().ca_pem,
        ..old_agent.clone()
    };
    let tls = stale.client_tls().unwrap();
    for m in &c.manager.managers {
        let refusal = wait::until(
            &format!("manager {} to refuse the old root", m.addr),
            Duration::from_secs(30),
            || async {
                let channel = tls::connect(&m.addr, &tls, Role::Manager).await.ok()?;
                CaClient::new(channel)
                    .node_certificate_status(NodeCertificateStatusRequest {
                        node_id: old_agent.id().unwrap(),
                    })
                    .await
                    .err()
            },
        )
        .await;
        assert_eq!(refusal.code(), Code::Unauthenticated, "{refusal:?}");
        assert!(
            refusal
                .message()
                .contains("not signed by this cluster's CA"),
            "{}",
            refusal.message()
        );
    }

    // The old worker token is refused, saying why; the new one joins.
    let new_token = worker_token(&c.manager);
    assert!(new_token.contains(&new_digest), "{new_token}");
    let mut join = Command::new(bin_path("lnswarm-agent"));
    join.args(["join", "--data-dir"])
        .arg(tmp.path().join("late"))
        .args(["--token", &old_token, "--manager", &c.manager.any_addr()]);
    let (status, _, err) = run(join);
    assert!(!status.success(), "the old token joins nothing");
    assert!(
        err.contains("is not the one expected") && err.contains("join token"),
        "{err}"
    );
    let mut agent = TestAgent::join(&c.manager, tmp.path(), "after-rotation");
    agent.start();
    wait::until("the new agent READY", Duration::from_secs(60), || async {
        try_agent_states(&c.manager)?
            .iter()
            .any(|(id, s)| id == &agent.id && s == "READY")
            .then_some(())
    })
    .await;

    // And the nodes still pay.
    c.pay(&alice, &bob, 1_000_000);
    c.pay(&bob, &alice, 1_000_000);
    agent.terminate();

    // An operator's own root: one naming another cluster is refused, one naming
    // this cluster starts the next rotation.
    let rotate_to = |ca: &TestCa, name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = ca.write(&dir);
        let mut cmd = Cluster::ctl(&c.manager);
        cmd.args(["cluster", "ca", "--format", "json", "--rotate", "--ca-cert"])
            .arg(cert)
            .arg("--ca-key")
            .arg(key);
        run(cmd)
    };
    let (status, _, err) = rotate_to(&TestCa::new("another-cluster"), "foreign-root");
    assert!(
        !status.success() && err.contains("names another cluster"),
        "{err}"
    );
    let own = TestCa::new(info["cluster_id"].as_str().unwrap());
    let (status, out, err) = rotate_to(&own, "own-root");
    assert!(status.success(), "{err}");
    let next: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(next["phase"], "rotating", "{next}");
    assert_eq!(
        next["new_root_ca_digest"],
        ca_digest(own.ca.cert_der()).as_str(),
        "{next}"
    );
}
