//! Owners register a node and recover access to it through the Scheduler; bad
//! challenges, signatures and sealed seeds are refused with clear codes and store
//! nothing; an owner's certificate opens only its own node.

use std::path::Path;

use lnswarm_common::{
    api::{
        scheduler_client::SchedulerClient, ChallengeRequest, ChallengeScope,
        ListInviteCodesRequest, NodeInfoRequest, RegistrationRequest,
    },
    credentials::Credentials,
    node_keys,
    pki::{new_key_and_csr, subject_of, Role},
    seal,
};
use lnswarm_tests::{manager::TestManager, process::run};
use tonic::{transport::Channel, Code};

fn ca_digest(m: &TestManager) -> String {
    let mut cmd = m.ctl();
    cmd.args(["cluster", "info", "--format", "json"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["root_ca_digest"].as_str().unwrap().to_string()
}

/// An app credential (`lnswarmctl app create`), which registration needs when no
/// invite code is given.
fn app(m: &TestManager, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("app");
    let mut cmd = m.ctl();
    cmd.args(["app", "create", "test-app", "--out"]).arg(&out);
    let (status, stdout, err) = run(cmd);
    assert!(status.success(), "app create: {stdout}{err}");
    out
}

/// `lnswarmctl node register --app APP`; returns (node id, mnemonic).
fn register_with_ctl(
    m: &TestManager,
    digest: &str,
    profile: &Path,
    device: &str,
    app: &Path,
) -> (String, String) {
    let mut cmd = std::process::Command::new(lnswarm_tests::bin_path("lnswarmctl"));
    cmd.args([
        "--manager",
        &m.addr,
        "node",
        "register",
        "--ca-digest",
        digest,
        "--device",
        device,
        "--app",
    ])
    .arg(app)
    .arg("--profile-dir")
    .arg(profile);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "register failed: {out}{err}");
    let node_id = out
        .lines()
        .find_map(|l| l.strip_prefix("node id: "))
        .expect("prints the node id")
        .to_string();
    let mnemonic = out.lines().last().unwrap().trim().to_string();
    assert_eq!(
        mnemonic.split_whitespace().count(),
        24,
        "shows the 24-word mnemonic: {out}"
    );
    (node_id, mnemonic)
}

async fn scheduler(m: &TestManager, creds: Option<&Credentials>) -> SchedulerClient<Channel> {
    SchedulerClient::new(m.channel_as(creds).await)
}

struct Attempt {
    node_id: Vec<u8>,
    network: String,
    challenge: Vec<u8>,
    signature: String,
    sealed_seed: Vec<u8>,
}

impl Attempt {
    fn request(self) -> RegistrationRequest {
        RegistrationRequest {
            node_id: self.node_id,
            network: self.network,
            challenge: self.challenge,
            signature: self.signature,
            csr: new_key_and_csr("dev", Some(Role::User))
                .unwrap()
                .csr_pem
                .into_bytes(),
            device: "dev".into(),
            sealed_seed: self.sealed_seed,
            invite_code: String::new(),
        }
    }
}

/// A well-formed registration of `seed`'s node with a fresh challenge of `scope`.
async fn attempt(s: &mut SchedulerClient<Channel>, seed: &[u8], scope: ChallengeScope) -> Attempt {
    let node_id = hex::decode(node_keys::node_id(seed).unwrap()).unwrap();
    let c = s
        .get_challenge(ChallengeRequest {
            scope: scope as i32,
            node_id: node_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        c.challenge.len(),
        58,
        "version, scope, expiry, nonce and MAC"
    );
    Attempt {
        node_id,
        network: "regtest".into(),
        signature: node_keys::sign_message(seed, &c.challenge).unwrap(),
        challenge: c.challenge,
        sealed_seed: seal::seal(&c.seal_public_key, seed).unwrap(),
    }
}

fn node_count(m: &TestManager) -> usize {
    let mut cmd = m.ctl();
    cmd.args(["node", "ls", "--format", "json"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_register_and_recover_and_bad_attempts_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = TestManager::init(tmp.path(), None).await;
    let digest = ca_digest(&m);
    let app_dir = app(&m, tmp.path());
    let app_creds = Credentials::load(&app_dir).unwrap();

    // Without an invite code or an app credential, nobody registers.
    let mut cmd = std::process::Command::new(lnswarm_tests::bin_path("lnswarmctl"));
    cmd.args([
        "--manager",
        &m.addr,
        "node",
        "register",
        "--ca-digest",
        &digest,
    ])
    .arg("--profile-dir")
    .arg(tmp.path().join("nobody"));
    let (status, out, err) = run(cmd);
    assert!(!status.success(), "{out}");
    assert!(err.contains("an invite code or an app credential"), "{err}");

    // Register through lnswarmctl: a device credential bound to the node.
    let phone = tmp.path().join("phone");
    let (node_id, mnemonic) = register_with_ctl(&m, &digest, &phone, "phone", &app_dir);
    let phone_creds = Credentials::load(&phone).unwrap();
    let subject = subject_of(&phone_creds.cert_pem).unwrap();
    assert_eq!(subject.organizational_units, vec!["lightning-user"]);
    assert_eq!(subject.common_name.unwrap(), format!("{node_id}/phone"));
    assert_eq!(node_count(&m), 1);
    let mut ls = m.ctl();
    ls.args(["node", "inspect", &node_id, "--format", "json"]);
    let (_, out, _) = run(ls);
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["state"], "registered");
    assert_eq!(inspected["owner_devices"], serde_json::json!(["phone"]));

    // The owner certificate opens the owner's own Scheduler calls.
    let codes = scheduler(&m, Some(&phone_creds))
        .await
        .list_invite_codes(ListInviteCodesRequest {})
        .await
        .expect("owner lists its invite codes")
        .into_inner()
        .invite_code_list;
    assert_eq!(codes.len(), 3);
    assert!(codes.iter().all(|c| !c.is_redeemed));

    // Recover from the mnemonic on another device; the first device keeps working.
    let words = tmp.path().join("words");
    std::fs::write(&words, &mnemonic).unwrap();
    let laptop = tmp.path().join("laptop");
    let mut cmd = std::process::Command::new(lnswarm_tests::bin_path("lnswarmctl"));
    cmd.args([
        "--manager",
        &m.addr,
        "node",
        "recover",
        "--ca-digest",
        &digest,
        "--device",
        "laptop",
    ])
    .arg("--mnemonic-file")
    .arg(&words)
    .arg("--profile-dir")
    .arg(&laptop);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "recover failed: {out}{err}");
    assert!(out.contains(&node_id));
    let laptop_creds = Credentials::load(&laptop).unwrap();
    assert_eq!(
        subject_of(&laptop_creds.cert_pem)
            .unwrap()
            .common_name
            .unwrap(),
        format!("{node_id}/laptop")
    );
    for creds in [&phone_creds, &laptop_creds] {
        scheduler(&m, Some(creds))
            .await
            .list_invite_codes(ListInviteCodesRequest {})
            .await
            .expect("both device certificates are valid");
    }

    // Refusals, made directly on the API, as the app.
    let mut anon = scheduler(&m, Some(&app_creds)).await;
    let seed1 = node_keys::seed_from_mnemonic(&mnemonic).unwrap();
    let (_, seed3) = node_keys::new_mnemonic();
    let (_, seed4) = node_keys::new_mnemonic();

    let again = attempt(&mut anon, &seed1, ChallengeScope::Register).await;
    let err = anon.register(again.request()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::AlreadyExists,
        "a node registers once: {err:?}"
    );

    let wrong_scope = attempt(&mut anon, &seed3, ChallengeScope::Recover).await;
    let err = anon.register(wrong_scope.request()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "wrong scope: {err:?}");

    let mut bad_sig = attempt(&mut anon, &seed3, ChallengeScope::Register).await;
    bad_sig.signature = node_keys::sign_message(&seed4, &bad_sig.challenge).unwrap();
    let err = anon.register(bad_sig.request()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "signature by another key: {err:?}"
    );

    let mut other_seed = attempt(&mut anon, &seed3, ChallengeScope::Register).await;
    let pk = anon
        .get_challenge(ChallengeRequest {
            scope: 0,
            node_id: other_seed.node_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .seal_public_key;
    other_seed.sealed_seed = seal::seal(&pk, &seed4).unwrap();
    let err = anon.register(other_seed.request()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "seed of another node: {err:?}"
    );

    let mut garbage = attempt(&mut anon, &seed3, ChallengeScope::Register).await;
    garbage.sealed_seed = vec![7; 80];
    let err = anon.register(garbage.request()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "unopenable seed: {err:?}"
    );

    let mut testnet = attempt(&mut anon, &seed3, ChallengeScope::Register).await;
    testnet.network = "bitcoin".into();
    let err = anon.register(testnet.request()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "wrong network: {err:?}");

    let err = anon
        .get_challenge(ChallengeRequest {
            scope: 0,
            node_id: vec![2; 10],
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "malformed node id: {err:?}"
    );

    assert_eq!(node_count(&m), 1, "no refused attempt stored a node");

    // A good attempt registers node 3; replaying its challenge is refused.
    let good = attempt(&mut anon, &seed3, ChallengeScope::Register).await;
    let replay = Attempt {
        node_id: good.node_id.clone(),
        network: good.network.clone(),
        challenge: good.challenge.clone(),
        signature: good.signature.clone(),
        sealed_seed: good.sealed_seed.clone(),
    };
    // Anonymously, with one of node 1's invite codes.
    let mut anonymous = scheduler(&m, None).await;
    let mut with_code = good.request();
    with_code.invite_code = codes[0].code.clone();
    anonymous
        .register(with_code)
        .await
        .expect("node 3 registers with an invite code");
    let err = anon.register(replay.request()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "replayed challenge: {err:?}"
    );
    assert_eq!(node_count(&m), 2);

    // The phone's certificate is node 1's: node 3's calls are refused.
    let node3 = hex::decode(node_keys::node_id(&seed3).unwrap()).unwrap();
    let err = scheduler(&m, Some(&phone_creds))
        .await
        .get_node_info(NodeInfoRequest {
            node_id: node3,
            wait: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "owner of node 1 asking about node 3: {err:?}"
    );
    let log = m.proc.log_text();
    assert!(
        !log.contains(&hex::encode(seed1)),
        "the seed never appears in the manager's log"
    );
}
