//! Identities that cannot be forged: the CA names a certificate from the role and id
//! it grants and nothing the caller says; every client checks the server it reached
//! by the OU and, where it knows it, the CN of its certificate; names written in
//! other string types count.

use std::{process::Command, time::Duration};

use lnswarm_common::{
    api::{
        ca_client::CaClient, control_client::ControlClient, GetClusterInfoRequest,
        IssueNodeCertificateRequest,
    },
    pki::{new_key_and_csr, Role},
    tls::{self, ServerIdentity},
};
use lnswarm_tests::{
    agents::{worker_token, TestAgent},
    bin_path,
    certs::{fake_node_id, TestCa},
    cluster::ManagerCluster,
    impostor::Impostor,
    manager::TestManager,
    wait,
};
use tonic::Code;
use x509_parser::extensions::GeneralName;

/// The DNS and IP SANs and the OU of a PEM certificate.
fn names(pem: &[u8]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(format!("{b:?}")),
                _ => {}
            }
        }
    }
    let ous = cert
        .subject()
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    (dns, ips, ous)
}

#[tokio::test]
async fn a_worker_token_buys_a_certificate_for_no_name_but_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    let token = worker_token(&m);
    let mut ca = CaClient::new(m.channel_as(None).await);
    let issue = |addr: String| {
        let key = new_key_and_csr("x", Some(Role::Worker)).unwrap();
        IssueNodeCertificateRequest {
            csr: key.csr_pem.into_bytes(),
            token: token.clone(),
            addr,
            lease_epoch: 0,
        }
    };
    for addr in [
        "swarm-manager:4242",
        "lightning-node:1",
        "lnswarm-operator:1",
        "*:1",
        "*.example.com:443",
        "evil.example.com:1",
        "swarm-manager",
    ] {
        let cert = ca
            .issue_node_certificate(issue(addr.into()))
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e:?}"))
            .into_inner()
            .certificate;
        let (dns, ips, ous) = names(&cert);
        assert_eq!(dns, ["swarm-worker"], "{addr}: only its own role's name");
        assert!(ips.is_empty(), "{addr}: no address SAN for a host name");
        assert_eq!(ous, ["swarm-worker"], "{addr}");
    }
    // An IP address is recorded, as an IP SAN.
    let cert = ca
        .issue_node_certificate(issue("127.0.0.9:5".into()))
        .await
        .unwrap()
        .into_inner()
        .certificate;
    let (dns, ips, _) = names(&cert);
    assert_eq!(dns, ["swarm-worker"]);
    assert_eq!(ips.len(), 1, "{ips:?}");
    // A 10 KiB host name is refused outright.
    let err = ca
        .issue_node_certificate(issue(format!("{}:1", "a".repeat(10 * 1024))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A CSR asking for the manager's OU is refused.
    let key = new_key_and_csr("x", Some(Role::Manager)).unwrap();
    let err = ca
        .issue_node_certificate(IssueNodeCertificateRequest {
            csr: key.csr_pem.into_bytes(),
            token: token.clone(),
            addr: String::new(),
            lease_epoch: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn ous_in_two_string_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let test_ca = TestCa::new("cluster-ou-types");
    let m = TestManager::init(dir.path(), Some(&test_ca)).await;
    let bmp =
        rcgen::DnValue::BmpString(rcgen::string::BmpString::try_from("swarm-worker").unwrap());
    let two = test_ca.mint_raw_values(
        "op",
        &["lnswarm-operator".into(), bmp.clone()],
        test_ca.cluster_id(),
    );
    let err = ControlClient::new(m.channel_as(Some(&two)).await)
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // One OU, written as a BMPString, is read like any other.
    let bmp_operator =
        rcgen::DnValue::BmpString(rcgen::string::BmpString::try_from("lnswarm-operator").unwrap());
    let one = test_ca.mint_raw_values("op", &[bmp_operator], test_ca.cluster_id());
    ControlClient::new(m.channel_as(Some(&one)).await)
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .expect("a BMPString OU is a valid OU");
}

/// Runs `cmd` with a bound, so a hang fails the test instead of stalling it.
fn run_bounded(mut cmd: Command) -> (bool, String) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn lnswarmctl_joiners_and_agents_refuse_a_server_of_another_role() {
    let dir = tempfile::tempdir().unwrap();
    let test_ca = TestCa::new("cluster-impostors");
    let m = TestManager::init(dir.path(), Some(&test_ca)).await;
    let token = worker_token(&m);
    let impostor = Impostor::start(&test_ca.mint(Role::Worker, "a-worker"), None).await;

    // lnswarmctl with operator credentials.
    let mut ctl = m.ctl();
    ctl.env("LNSWARM_MANAGER", &impostor.addr)
        .args(["cluster", "info"]);
    let (ok, out) = run_bounded(ctl);
    assert!(!ok, "{out}");
    assert!(
        out.contains("swarm-worker a-worker") && out.contains("not a swarm-manager"),
        "names the refusal: {out}"
    );

    // A joining agent or manager fetches the (public) root CA from it, then refuses
    // to hand it the join token.
    let mut join = Command::new(bin_path("lnswarm-agent"));
    join.args(["join", "--data-dir"])
        .arg(dir.path().join("joiner"))
        .args(["--token", &token, "--manager", &impostor.addr]);
    let (ok, out) = run_bounded(join);
    assert!(!ok, "{out}");
    assert!(out.contains("not a swarm-manager"), "{out}");
    let mut join = Command::new(bin_path("lnswarm-manager"));
    join.args(["join", "--data-dir"])
        .arg(dir.path().join("manager-joiner"))
        .args(["--listen", &lnswarm_tests::free_addr()])
        .args(["--token", &token, "--manager", &impostor.addr]);
    let (ok, out) = run_bounded(join);
    assert!(!ok, "{out}");
    assert!(out.contains("not a swarm-manager"), "{out}");
    assert_eq!(
        impostor.issue_calls(),
        0,
        "no join token reached the impostor"
    );

    // A joined agent whose manager list names the impostor never opens a session
    // with it, and says why.
    let mut agent = TestAgent::join(&m, dir.path(), "agent");
    let config_path = agent.data_dir.join("agent.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["managers"] = serde_json::json!([impostor.addr]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    agent.start();
    let log = dir.path().join("agent.log");
    wait::until(
        "the agent to refuse the impostor",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains("not a swarm-manager"))
                .map(|_| ())
        },
    )
    .await;
    // Every handshake so far was the unverified CA fetch of the two joiners.
    assert_eq!(
        impostor.handshakes(),
        2,
        "only the joiners' CA fetches completed"
    );
    assert!(impostor.connections() > 2, "the agent did dial it");
}

#[tokio::test]
async fn the_owners_client_refuses_a_node_that_is_not_its_node() {
    let test_ca = TestCa::new("cluster-nodes");
    let mine = fake_node_id(1);
    let other = fake_node_id(2);
    let impostor = Impostor::start(&test_ca.mint(Role::Node, &other), None).await;
    let owner = test_ca.mint(Role::User, &format!("{mine}/phone"));
    let err = tls::connect(
        &impostor.addr,
        &owner.client_tls().unwrap(),
        ServerIdentity::exact(Role::Node, &mine),
    )
    .await
    .unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(
        chain.contains(&format!("the server is lightning-node {other}")),
        "{chain}"
    );
    assert_eq!(impostor.handshakes(), 0);
    // The same client reaches the node it asked for.
    let right = Impostor::start(&test_ca.mint(Role::Node, &mine), None).await;
    tls::connect(
        &right.addr,
        &owner.client_tls().unwrap(),
        ServerIdentity::exact(Role::Node, &mine),
    )
    .await
    .expect("its own node passes");
    wait::until(
        "the server to count the handshake",
        Duration::from_secs(5),
        || async { (right.handshakes() == 1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raft_peer_refuses_another_manager_at_a_members_address() {
    let dir = tempfile::tempdir().unwrap();
    let test_ca = TestCa::new("cluster-raft-impostor");
    let mut cluster = ManagerCluster::start_with_ca(dir.path(), 3, &[], Some(&test_ca)).await;
    let leader = cluster.leader().await;
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let victim_addr = cluster.managers[victim].addr.clone();
    let victim_id = cluster.managers[victim].id();
    cluster.kill9(victim);
    // A valid manager certificate, of another manager.
    let impostor = Impostor::start(
        &test_ca.mint(Role::Manager, "another-manager"),
        Some(&victim_addr),
    )
    .await;
    let log = cluster.managers[leader]
        .proc
        .as_ref()
        .map(|p| p.log.clone())
        .unwrap();
    wait::until(
        "the leader to refuse the impostor",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| {
                    l.contains("swarm-manager another-manager")
                        && l.contains(&format!("not swarm-manager {victim_id}"))
                })
                .map(|_| ())
        },
    )
    .await;
    assert!(impostor.connections() > 0, "the leader dialed the address");
    assert_eq!(impostor.handshakes(), 0, "and accepted no handshake");
}
