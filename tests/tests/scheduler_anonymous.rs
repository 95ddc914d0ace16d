//! Anonymous callers write nothing: challenges are MACs, not store records, so ten
//! thousand GetChallenge calls leave the store where it was; and a caller over its
//! budget is refused with RESOURCE_EXHAUSTED while another caller is served.

use lnswarm_common::{
    api::{scheduler_client::SchedulerClient, ChallengeRequest, ChallengeScope},
    pki::Role,
    tls,
};
use lnswarm_tests::{agents::ctl_json, certs::fake_node_id, manager::TestManager};
use tonic::Code;

fn applied_index(m: &TestManager) -> u64 {
    ctl_json(m, &["manager", "ls"])[0]["applied_index"]
        .as_u64()
        .expect("manager ls shows the applied index")
}

async fn scheduler_from(
    m: &TestManager,
    local: &str,
) -> SchedulerClient<tonic::transport::Channel> {
    let ca = m.operator().ca_pem;
    let channel = tls::connect_from(
        Some(local.parse().unwrap()),
        &m.addr,
        &tls::client_config(&ca, None).unwrap(),
        Role::Manager,
    )
    .await
    .expect("connect");
    SchedulerClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_anonymous_challenges_write_nothing_and_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    let before = applied_index(&m);

    let client = scheduler_from(&m, "127.0.0.1").await;
    let mut calls = tokio::task::JoinSet::new();
    let (mut served, mut refused) = (0usize, 0usize);
    let mut a_refusal: Option<tonic::Status> = None;
    let mut count = |r: Result<Result<_, tonic::Status>, tokio::task::JoinError>| match r.unwrap() {
        Ok(_) => served += 1,
        Err(e) if e.code() == Code::ResourceExhausted => {
            refused += 1;
            a_refusal.get_or_insert(e);
        }
        Err(e) => panic!("unexpected answer: {e:?}"),
    };
    for i in 0..10_000u32 {
        let mut c = client.clone();
        calls.spawn(async move {
            // A fresh node id each time: node ids cost nothing to make.
            let mut secret = [1u8; 32];
            secret[28..].copy_from_slice(&i.to_be_bytes());
            let id = bitcoin::secp256k1::PublicKey::from_secret_key(
                &bitcoin::secp256k1::Secp256k1::signing_only(),
                &bitcoin::secp256k1::SecretKey::from_slice(&secret).unwrap(),
            )
            .serialize()
            .to_vec();
            c.get_challenge(ChallengeRequest {
                scope: ChallengeScope::Register as i32,
                node_id: id,
            })
            .await
        });
        // Keep a bounded number in flight.
        while calls.len() >= 256 {
            count(calls.join_next().await.unwrap());
        }
    }
    while let Some(r) = calls.join_next().await {
        count(r);
    }
    assert_eq!(served + refused, 10_000);
    // The bucket refills at 20/s, so how many are served depends on the
    // machine's speed; that most are refused does not.
    assert!(
        refused > served,
        "the limit refused most of the flood ({served} served, {refused} refused)"
    );
    let err = a_refusal.expect("a refusal");
    assert!(err.message().contains("retry in"), "{err:?}");

    // Another address is served meanwhile.
    let mut other = scheduler_from(&m, "127.0.0.2").await;
    let c = other
        .get_challenge(ChallengeRequest {
            scope: ChallengeScope::Register as i32,
            node_id: hex::decode(fake_node_id(2)).unwrap(),
        })
        .await
        .expect("another caller is served");
    assert!(!c.into_inner().challenge.is_empty());

    assert_eq!(
        applied_index(&m),
        before,
        "no anonymous call wrote to the replicated store"
    );
}
