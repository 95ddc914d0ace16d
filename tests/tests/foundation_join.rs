//! Joining a cluster with a token: the worker token yields a worker certificate,
//! the manager token a manager certificate; a wrong secret, a rotated-away token and
//! a token whose CA digest does not match are refused, and the joiner stores nothing.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use lnswarm_common::{
    credentials::Credentials,
    join::{join, JoinError},
    pki::{subject_of, Role},
};
use lnswarm_tests::{bin_path, manager::TestManager, process::run};

fn ctl_token(m: &TestManager, role: &str, rotate: bool) -> String {
    let mut cmd = m.ctl();
    cmd.args(["cluster", "join-token", role]);
    if rotate {
        cmd.arg("--rotate");
    }
    let (status, out, err) = run(cmd);
    assert!(status.success(), "lnswarmctl failed: {err}");
    let token = out.trim().to_string();
    assert!(
        token.starts_with("LNSTKN-1-"),
        "prints just the token: {out:?}"
    );
    token
}

fn agent_join(m: &TestManager, dir: &Path, token: &str) -> (bool, String) {
    let mut cmd = Command::new(bin_path("lnswarm-agent"));
    cmd.args(["join", "--data-dir"])
        .arg(dir)
        .args(["--token", token, "--manager", &m.addr]);
    let (status, out, err) = run(cmd);
    (status.success(), format!("{out}{err}"))
}

fn assert_nothing_stored(dir: &Path) {
    assert!(
        !dir.join("credentials").join("cert.pem").exists(),
        "no certificate stored"
    );
    assert!(
        !dir.join("credentials").join("key.pem").exists(),
        "no key stored"
    );
    assert!(!dir.join("agent.json").exists(), "no agent config stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_their_role_and_bad_tokens_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = TestManager::init(tmp.path(), None).await;
    let worker_token = ctl_token(&m, "worker", false);
    let manager_token = ctl_token(&m, "manager", false);
    assert_ne!(worker_token, manager_token);

    // The worker token makes an agent a swarm-worker, with its key kept private.
    let agent_dir = tmp.path().join("agent");
    let (ok, out) = agent_join(&m, &agent_dir, &worker_token);
    assert!(ok, "agent join failed: {out}");
    let creds = Credentials::load(&agent_dir.join("credentials")).unwrap();
    let subject = subject_of(&creds.cert_pem).unwrap();
    assert_eq!(subject.organizational_units, vec!["swarm-worker"]);
    assert_eq!(subject.organizations, vec![creds.cluster_id().unwrap()]);
    for file in ["key.pem", "cert.pem"] {
        let mode = std::fs::metadata(agent_dir.join("credentials").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} mode");
    }
    // The issued certificate is accepted by the manager it joined.
    creds
        .peer_verifier()
        .unwrap()
        .verify(&lnswarm_common::tls::certs_from_pem(&creds.cert_pem).unwrap()[0])
        .expect("issued certificate verifies against the cluster CA");

    // A holder renews with its certificate alone: same id, same role.
    let mut ca = lnswarm_common::api::ca_client::CaClient::new(m.channel_as(Some(&creds)).await);
    let renewed = ca
        .issue_node_certificate(lnswarm_common::api::IssueNodeCertificateRequest {
            csr: lnswarm_common::pki::new_key_and_csr("renew", Some(Role::Worker))
                .unwrap()
                .csr_pem
                .into_bytes(),
            token: String::new(),
            addr: String::new(),
            lease_epoch: 0,
        })
        .await
        .expect("renewal with a valid worker certificate")
        .into_inner();
    assert_eq!(renewed.node_id, creds.id().unwrap());
    assert_eq!(renewed.role, "swarm-worker");

    // The manager token makes a swarm-manager.
    let joined = join(&m.addr, &manager_token, Role::Manager, "127.0.0.1:1")
        .await
        .expect("join with the manager token");
    let subject = subject_of(&joined.credentials.cert_pem).unwrap();
    assert_eq!(subject.organizational_units, vec!["swarm-manager"]);
    assert_eq!(subject.common_name.as_deref(), Some(joined.id.as_str()));

    // The manager token cannot be used to get a worker certificate and vice versa.
    match join(&m.addr, &worker_token, Role::Manager, "").await {
        Err(JoinError::Refused(status)) => assert_eq!(status.code(), tonic::Code::PermissionDenied),
        other => panic!("worker token for a manager certificate: {:?}", other.err()),
    }

    // A wrong secret with the right CA digest.
    let digest = worker_token.split('-').nth(2).unwrap();
    let wrong = format!("LNSTKN-1-{digest}-{}", "0".repeat(40));
    let dir = tmp.path().join("wrong-secret");
    let (ok, out) = agent_join(&m, &dir, &wrong);
    assert!(!ok, "a wrong secret must be refused");
    assert!(
        out.contains("not valid for this cluster"),
        "clear message: {out}"
    );
    assert_nothing_stored(&dir);

    // A rotated-away token.
    let rotated = ctl_token(&m, "worker", true);
    assert_ne!(rotated, worker_token);
    let dir = tmp.path().join("rotated-away");
    let (ok, out) = agent_join(&m, &dir, &worker_token);
    assert!(!ok, "a rotated-away token must be refused: {out}");
    assert_nothing_stored(&dir);
    // ...while the new one works.
    let (ok, out) = agent_join(&m, &tmp.path().join("rotated-new"), &rotated);
    assert!(ok, "the rotated token joins: {out}");

    // A token naming another CA is refused by the joiner before it sends the secret.
    let secret = rotated.rsplit('-').next().unwrap();
    let foreign = format!("LNSTKN-1-{}-{secret}", "ab".repeat(32));
    let dir = tmp.path().join("foreign-ca");
    let (ok, out) = agent_join(&m, &dir, &foreign);
    assert!(!ok);
    assert!(
        out.contains("refusing to send anything secret"),
        "clear message: {out}"
    );
    assert_nothing_stored(&dir);
    assert!(
        !m.proc.log_text().contains(secret),
        "the token's secret never reaches the manager's log"
    );

    // A malformed token never leaves the joiner.
    let dir = tmp.path().join("malformed");
    let (ok, out) = agent_join(&m, &dir, "not-a-token");
    assert!(!ok);
    assert!(out.contains("malformed join token"), "{out}");
    assert_nothing_stored(&dir);
}
