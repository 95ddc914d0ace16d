//! Certificates that renew themselves: a cluster whose certificates live 20 s runs
//! through five lifetimes with every agent READY and both hosted nodes serving, and
//! pays at the end; every certificate on disk was replaced at least four times. An
//! agent that was stopped for longer than its certificate's lifetime is refused,
//! with a message saying how to join again, and nothing of it is rewritten.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use lnswarm_common::{
    api::{ca_client::CaClient, IssueNodeCertificateRequest},
    credentials::Credentials,
    pki::{new_key_and_csr, validity_of, Role},
    tls,
};
use lnswarm_tests::{
    agents::{agent_states, ctl_json, set_heartbeat, try_agent_states, TestAgent},
    bin_path,
    hosting::HostingCluster,
    manager::TestManager,
    wait,
};
use tonic::Code;

/// The certificates' lifetime in the first test, seconds.
const LIFETIME: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_renew_themselves_through_five_lifetimes() {
    let tmp = lnswarm_tests::keepable_tempdir();
    let expiry = format!("{LIFETIME}s");
    let c = HostingCluster::start_quorum_with(tmp.path(), 3, 2, &["--cert-expiry", &expiry]).await;
    // A session is reopened on a renewed certificate once per lifetime; a 3 s TTL
    // leaves that room on a loaded machine.
    set_heartbeat(&c.manager, 1000, 3).await;

    let alice = c.register("alice");
    let bob = c.register("bob");
    for o in [&alice, &bob] {
        let (ok, _, err) = c.owner_ctl(o, &["schedule"]);
        assert!(ok, "schedule {}: {err}", o.name);
    }
    c.regtest.mine(101).await;
    let (_, address, _) = c.owner_ctl(&alice, &["newaddr"]);
    c.regtest.send(address.trim(), 1.0).await;
    c.regtest.mine(6).await;
    wait::until("alice's funds", Duration::from_secs(60), || async {
        let b = c.owner_json(&alice, &["balances"]);
        (b["onchain_spendable_sats"].as_u64()? >= 100_000_000).then_some(())
    })
    .await;
    let bob_port = c.owner_json(&bob, &["getinfo"])["listening_addresses"][0]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    let (ok, _, err) = c.owner_ctl(
        &alice,
        &[
            "open-channel",
            &format!("{}@127.0.0.1:{bob_port}", bob.node_id),
            "500000",
        ],
    );
    assert!(ok, "open-channel: {err}");
    c.regtest
        .mine_after_broadcast("the funding transaction", 1, 6)
        .await;
    wait::until("a usable channel", Duration::from_secs(90), || async {
        let chans = c.owner_json(&alice, &["channels", "--format", "json"]);
        chans
            .as_array()?
            .iter()
            .any(|ch| ch["is_usable"] == true)
            .then_some(())
    })
    .await;

    // Every certificate on disk: the managers', the operator's, the agents' and
    // the hosted nodes'.
    let mut files: Vec<PathBuf> = c
        .manager
        .managers
        .iter()
        .map(|m| m.data_dir.join("credentials/cert.pem"))
        .collect();
    files.push(c.manager.managers[0].data_dir.join("operator/cert.pem"));
    for a in &c.agents {
        files.push(a.data_dir.join("credentials/cert.pem"));
    }
    for o in [&alice, &bob] {
        let agent = c.inspect(&o.node_id)["agent_id"]
            .as_str()
            .unwrap()
            .to_string();
        let a = &c.agents[c.agent_index(&agent)];
        files.push(a.data_dir.join("nodes").join(&o.node_id).join("tls.crt"));
        // Operators find a hosted node's log by its node id.
        let log = a
            .data_dir
            .join("tasks")
            .join(format!("node-{}.log", o.node_id));
        assert!(
            log.exists(),
            "{} is where {}'s log is",
            log.display(),
            o.name
        );
    }
    let mut seen: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut not_ready = Vec::new();
    let end = Instant::now() + Duration::from_secs(5 * LIFETIME);
    let (mut checks, mut listings, mut failed_listings) = (0, 0, 0);
    while Instant::now() < end {
        for f in &files {
            if let Ok(pem) = std::fs::read_to_string(f) {
                seen.entry(f.clone()).or_default().insert(pem);
            }
        }
        checks += 1;
        if checks % 4 == 0 {
            // `agent ls` with the operator credential, which lnswarmctl renews too.
            listings += 1;
            match try_agent_states(&c.manager) {
                Some(states) if states.len() == 2 && states.iter().all(|(_, s)| s == "READY") => {}
                Some(states) => {
                    not_ready.push(format!("{:.0?} left: {states:?}", end - Instant::now()))
                }
                None => failed_listings += 1,
            }
            for o in [&alice, &bob] {
                let info = c.owner_json(o, &["getinfo"]);
                assert_eq!(
                    info["node_id"],
                    o.node_id.as_str(),
                    "{} serves: {info}",
                    o.name
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(not_ready.is_empty(), "agents left READY: {not_ready:?}");
    assert!(
        failed_listings * 10 <= listings,
        "{failed_listings} of {listings} `agent ls` calls failed"
    );
    for f in &files {
        let n = seen.get(f).map_or(0, HashSet::len);
        assert!(
            n >= 5,
            "{} was replaced {} times in five lifetimes",
            f.display(),
            n.saturating_sub(1)
        );
    }
    // The certificates in use are the cluster's lifetime long, and current.
    let now = lnswarm_common::ids::now_unix_ms() as i64 / 1000;
    for f in &files {
        let (nb, na) = validity_of(&std::fs::read_to_string(f).unwrap()).unwrap();
        assert!(na > now, "{} is current", f.display());
        assert!(
            na - nb <= LIFETIME as i64 + 2,
            "{} lives {} s",
            f.display(),
            na - nb
        );
    }
    // Operators see the expiries.
    let agents = ctl_json(&c.manager, &["agent", "ls"]);
    for a in agents.as_array().unwrap() {
        assert!(
            !a["cert_expires"].as_str().unwrap().is_empty(),
            "agent ls: {a}"
        );
    }
    let managers = ctl_json(&c.manager, &["manager", "ls"]);
    for m in managers.as_array().unwrap() {
        assert!(
            !m["cert_expires"].as_str().unwrap().is_empty(),
            "manager ls: {m}"
        );
    }

    // After the last lifetime the nodes still pay each other.
    c.pay(&alice, &bob, 10_000_000);
    c.pay(&bob, &alice, 5_000_000);

    // Renewal is normal operation: no manager or agent logged an error, and the
    // nodes have fee estimates (the chain stand-in serves them). ldk-node itself
    // logs an ERROR when a node with no on-chain funds is offered an anchor
    // channel (it refuses, and the opener falls back to a channel without
    // anchors), so node logs are checked for the fee error only.
    let process_logs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    let mut node_logs = Vec::new();
    for a in &c.agents {
        node_logs.extend(
            std::fs::read_dir(a.data_dir.join("tasks"))
                .unwrap()
                .flatten()
                .map(|e| e.path()),
        );
    }
    let lines_with = |paths: &[PathBuf], needle: &str| -> Vec<String> {
        paths
            .iter()
            .flat_map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| format!("{}: {l}", p.display()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut errors = lines_with(&process_logs, " ERROR ");
    errors.extend(lines_with(
        &node_logs,
        "Failed to retrieve fee rate estimates",
    ));
    assert!(
        errors.is_empty(),
        "error lines in normal operation:\n{}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_away_longer_than_its_certificate_is_told_to_join_again() {
    let tmp = lnswarm_tests::keepable_tempdir();
    let m = TestManager::init_with(tmp.path(), None, &["--cert-expiry", "10s"]).await;
    let mut agent = TestAgent::join(&m, tmp.path(), "agent");
    agent.start();
    wait::until("the agent READY", Duration::from_secs(30), || async {
        (agent_states(&m)
            .iter()
            .any(|(id, s)| id == &agent.id && s == "READY"))
        .then_some(())
    })
    .await;
    agent.terminate();

    // Away for longer than its certificate lives.
    let creds_dir = agent.data_dir.join("credentials");
    let read_all = || {
        ["cert.pem", "key.pem", "ca.pem", "../agent.json"]
            .map(|f| std::fs::read(creds_dir.join(f)).unwrap())
    };
    let before = read_all();
    let creds = Credentials::load(&creds_dir).unwrap();
    let (_, not_after) = validity_of(&creds.cert_pem).unwrap();
    let now = lnswarm_common::ids::now_unix_ms() as i64 / 1000;
    tokio::time::sleep(Duration::from_secs((not_after - now).max(0) as u64 + 2)).await;

    // The managers refuse the certificate, saying what to do.
    let tls = creds.client_tls().unwrap();
    let channel = tls::connect(&m.addr, &tls, Role::Manager).await.unwrap();
    let csr = new_key_and_csr("agent", Some(Role::Worker)).unwrap();
    let refused = CaClient::new(channel)
        .issue_node_certificate(IssueNodeCertificateRequest {
            csr: csr.csr_pem.into_bytes(),
            ..Default::default()
        })
        .await
        .expect_err("an expired certificate renews nothing");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("expired")
            && refused.message().contains("join the cluster again"),
        "{}",
        refused.message()
    );

    // The agent itself refuses to run, with the way back.
    let mut cmd = Command::new(bin_path("lnswarm-agent"));
    cmd.args(["run", "--data-dir"]).arg(&agent.data_dir);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the expired agent kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "exits with an error: {stderr}");
    assert!(
        stderr.contains("certificate expired") && stderr.contains("lnswarm-agent join"),
        "says why and how to rejoin: {stderr}"
    );
    assert_eq!(read_all(), before, "nothing of the agent is rewritten");
    assert!(
        agent_states(&m)
            .iter()
            .any(|(id, s)| id == &agent.id && s != "READY"),
        "the agent is not READY"
    );
}
