//! Outgoing webhooks as an app developer meets them: an owner adds an https
//! webhook, their node is paid, and their receiver gets one signed
//! `invoice_payment` POST naming the payment (its preimage hashes to its hash), on a
//! quorum of three managers with the receiver's private CA handed to them
//! (`--webhook-ca-file`). Failed attempts are retried, a refusal (4xx) is not, a
//! leader killed while an event waits for its retry does not lose it, a rotated
//! secret signs the next event, and a deleted webhook gets nothing more.

use std::{collections::BTreeSet, time::Duration};

use base64::Engine;
use hmac::{Hmac, Mac};
use lnswarm_tests::{
    hosting::{Hosted, HostingCluster, Owner},
    process::run,
    wait,
    webhook_receiver::{Received, WebhookReceiver},
    Cluster,
};
use sha2::{Digest, Sha256};

/// Checked here with hmac and sha2 directly, as a receiver in any language would.
fn signed_with(r: &Received, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()) == r.signature
}

/// The POSTs of the event `event_id`.
fn posts_of(receiver: &WebhookReceiver, event_id: &str) -> Vec<Received> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r.json()["event_id"] == event_id)
        .collect()
}

/// Waits until the event `event_id` has been answered with 200; returns its POSTs.
async fn delivered(receiver: &WebhookReceiver, event_id: &str) -> Vec<Received> {
    wait::until(
        &format!("webhook event {event_id} to be delivered"),
        Duration::from_secs(90),
        || async {
            let posts = posts_of(receiver, event_id);
            posts.iter().any(|r| r.answered == 200).then_some(posts)
        },
    )
    .await
}

type Quorum = HostingCluster<lnswarm_tests::cluster::ManagerCluster>;

/// The hashes of `owner`'s received payments.
fn inbound(c: &Quorum, owner: &Owner) -> BTreeSet<String> {
    c.owner_json(owner, &["payments", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["direction"] == "inbound" && p["status"] == "succeeded")
        .map(|p| p["payment_hash"].as_str().unwrap().to_string())
        .collect()
}

/// The event id of the one payment `owner` received since `before`.
fn new_event(c: &Quorum, owner: &Owner, before: &BTreeSet<String>) -> (String, String) {
    let new: Vec<String> = inbound(c, owner).difference(before).cloned().collect();
    assert_eq!(new.len(), 1, "one new payment: {new:?}");
    (format!("invoice_payment-{}", new[0]), new[0].clone())
}

/// `from` pays `to` `msat`; returns the event id of that payment.
fn pay(c: &Quorum, from: &Owner, to: &Owner, msat: u64) -> String {
    let before = inbound(c, to);
    c.pay(from, to, msat);
    new_event(c, to, &before).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owners_webhook_gets_each_payment_signed_once_through_retries_and_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(tmp.path()).await;
    let ca = receiver.ca_file.to_str().unwrap().to_string();
    let mut c =
        HostingCluster::start_quorum_serving(tmp.path(), 3, 2, &["--webhook-ca-file", &ca]).await;
    let mut update = Cluster::ctl(&c.manager);
    update.args([
        "cluster",
        "update",
        "--webhook-retry",
        "1s",
        "--webhook-timeout",
        "5s",
    ]);
    let (status, out, err) = run(update);
    assert!(status.success(), "cluster update: {out}{err}");

    let Hosted { owner: alice, .. } = c.host("alice");
    let Hosted { owner: bob, .. } = c.host("bob");

    // Refused up front, with the reason: plain http (not even to loopback, which
    // this cluster does not allow), and more than 20 webhooks.
    for uri in [
        "http://hooks.example/bob",
        &format!("http://{}", &receiver.base[8..]),
    ] {
        let (ok, _, err) = c.owner_ctl(&bob, &["webhook", "add", uri]);
        assert!(!ok, "{uri} was accepted");
        assert!(err.contains("https"), "{uri}: {err}");
    }
    for _ in 0..20 {
        c.owner_json(&alice, &["webhook", "add", "https://hooks.example/alice"]);
    }
    let (ok, _, err) = c.owner_ctl(&alice, &["webhook", "add", "https://hooks.example/alice"]);
    assert!(!ok && err.contains("20 webhooks"), "{err}");
    let ids: Vec<String> = c
        .owner_json(&alice, &["webhook", "ls", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 20);
    let mut rm = vec!["webhook", "rm"];
    rm.extend(ids.iter().map(String::as_str));
    let (ok, _, err) = c.owner_ctl(&alice, &rm);
    assert!(ok, "{err}");
    assert_eq!(
        c.owner_json(&alice, &["webhook", "ls", "--format", "json"]),
        serde_json::json!([])
    );

    // Bob's webhook; its receiver fails the first two attempts.
    let added = c.owner_json(&bob, &["webhook", "add", &format!("{}/bob", receiver.base)]);
    let (id, secret) = (
        added["id"].to_string(),
        added["secret"].as_str().unwrap().to_string(),
    );
    receiver.answer_next(&[503, 503]);
    // Alice opens a channel to Bob and pays him 25 000 sat over it.
    let channel = c.funded_channel(&alice, &bob).await;
    let (event_id, hash) = new_event(&c, &bob, &BTreeSet::new());
    let posts = delivered(&receiver, &event_id).await;
    let answers: Vec<u16> = posts.iter().map(|r| r.answered).collect();
    assert_eq!(answers, vec![503, 503, 200], "attempts until delivered");
    // Every attempt carries the same bytes, signed with Bob's secret.
    assert!(posts
        .iter()
        .all(|r| r.body == posts[0].body && signed_with(r, &secret)));
    assert!(!signed_with(&posts[0], "whsec_someone-else"));
    let first = &posts[2];
    assert_eq!(first.path, "/bob");
    assert_eq!(first.content_type, "application/json");
    let body = first.json();
    assert_eq!(body["event_type"], "invoice_payment");
    assert_eq!(body["node_id"], bob.node_id.as_str());
    let event = &body["event"];
    assert_eq!(event["payment_hash"], hash.as_str());
    assert_eq!(event["amount_msat"], 25_000_000);
    assert_eq!(event["description"], "x");
    assert!(
        event["bolt11"].as_str().unwrap().starts_with("lnbcrt"),
        "{event}"
    );
    // The preimage is the payment's proof: it hashes to the payment hash.
    let preimage = hex::decode(event["preimage"].as_str().unwrap()).unwrap();
    assert_eq!(hex::encode(Sha256::digest(preimage)), hash);

    // A receiver that refuses (4xx) is not asked again.
    receiver.answer_next(&[400]);
    let refused = pay(&c, &alice, &bob, 1_000_000);
    wait::until("the refused POST", Duration::from_secs(60), || async {
        (!posts_of(&receiver, &refused).is_empty()).then_some(())
    })
    .await;
    // Three retry waits at the cluster's 1 s, doubling: a retry would have come.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(posts_of(&receiver, &refused).len(), 1, "a 400 was retried");

    // A rotated secret signs the next event; the old one no longer does.
    let rotated = c.owner_json(&bob, &["webhook", "rotate", &id]);
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let after_rotation = pay(&c, &alice, &bob, 2_000_000);
    let posts = delivered(&receiver, &after_rotation).await;
    assert!(signed_with(&posts[0], &new_secret) && !signed_with(&posts[0], &secret));

    // The leader is killed while an event waits for its retry: the next leader
    // sends it.
    let mut slow = Cluster::ctl(&c.manager);
    slow.args(["cluster", "update", "--webhook-retry", "10s"]);
    let (status, _, err) = run(slow);
    assert!(status.success(), "{err}");
    receiver.answer_next(&[503]);
    let across = pay(&c, &alice, &bob, 3_000_000);
    wait::until("the first attempt", Duration::from_secs(60), || async {
        (!posts_of(&receiver, &across).is_empty()).then_some(())
    })
    .await;
    let leader = c.manager.leader().await;
    c.manager.kill9(leader);
    let posts = delivered(&receiver, &across).await;
    assert_eq!(
        posts.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![503, 200]
    );

    // The nodes may have stopped themselves while their leases could not be renewed
    // during the election (self-fencing); they are back once the channel is.
    for owner in [&alice, &bob] {
        wait::until(
            &format!("{}'s node after the election", owner.name),
            Duration::from_secs(120),
            || async { c.owner_ctl(owner, &["getinfo"]).0.then_some(()) },
        )
        .await;
    }
    c.wait_channel_usable(&alice, &channel).await;

    // Deleted: nothing more is sent.
    let (ok, _, err) = c.owner_ctl(&bob, &["webhook", "rm", &id]);
    assert!(ok, "{err}");
    let before = receiver.received().len();
    c.pay(&alice, &bob, 4_000_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.received().len(),
        before,
        "sent to a deleted webhook"
    );
    c.manager.restart(leader, &[]);
}
