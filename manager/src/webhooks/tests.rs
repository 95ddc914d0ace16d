//! The webhook records as an owner and a node would see them: what is refused, what
//! a stale copy can do (nothing), and that a delete takes pending deliveries along.

use lnswarm_common::api::{HostedNode, NodeEventRecord, NodeLease, WebhookDelivery};

use super::{
    events::{self, EventError},
    registry::{self, WebhookError, MAX_PER_NODE},
};
use crate::{
    node_state::fence::FenceError,
    store::{keys, test_db::sealing_store, Store, TxnBuilder},
};

const NODE: &str = "node-a";

async fn node_with_lease(epoch: u64) -> (tempfile::TempDir, Store) {
    let (dir, store) = sealing_store().await;
    let txn = TxnBuilder::new()
        .put(keys::hosted_node(NODE), &HostedNode::default())
        .put(
            keys::node_lease(NODE),
            &NodeLease {
                node_id: NODE.into(),
                epoch,
                ..Default::default()
            },
        )
        .build();
    store.propose(txn).await.unwrap();
    (dir, store)
}

fn paid(hash: &str) -> NodeEventRecord {
    NodeEventRecord {
        event_id: format!("invoice_payment-{hash}"),
        event_type: "invoice_payment".into(),
        timestamp_unix_ms: 1,
        fields: serde_json::to_vec(&serde_json::json!({ "payment_hash": hash })).unwrap(),
    }
}

fn deliveries(store: &Store) -> Vec<WebhookDelivery> {
    store
        .list::<WebhookDelivery>(keys::WEBHOOK_DELIVERIES)
        .unwrap()
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

#[tokio::test]
async fn an_event_is_queued_once_per_webhook_and_sealed() {
    let (_dir, store) = node_with_lease(3).await;
    let one = registry::add(&store, NODE, "https://a.example/hook")
        .await
        .unwrap();
    let two = registry::add(&store, NODE, "https://b.example/hook")
        .await
        .unwrap();
    assert_eq!((one.id, two.id), (1, 2));
    assert_ne!(one.secret, two.secret);

    assert_eq!(
        events::record(&store, NODE, 3, &[paid("aa")])
            .await
            .unwrap(),
        2
    );
    // Seen again (a replay after a crash): nothing new.
    assert_eq!(
        events::record(&store, NODE, 3, &[paid("aa")])
            .await
            .unwrap(),
        0
    );

    let pending = deliveries(&store);
    assert_eq!(pending.len(), 2);
    let key = keys::webhook_delivery(NODE, 1, "invoice_payment-aa");
    let d = pending.iter().find(|d| d.webhook_id == 1).unwrap();
    // The body carries preimages: never in the clear in the store.
    assert!(!String::from_utf8_lossy(&d.body_sealed).contains("payment_hash"));
    let body: serde_json::Value =
        serde_json::from_slice(&registry::body(&store, &key, d).unwrap()).unwrap();
    assert_eq!(body["event_type"], "invoice_payment");
    assert_eq!(body["node_id"], NODE);
    assert_eq!(body["event_id"], "invoice_payment-aa");
    assert_eq!(body["event"]["payment_hash"], "aa");
}

#[tokio::test]
async fn a_stale_copy_records_nothing() {
    let (_dir, store) = node_with_lease(3).await;
    registry::add(&store, NODE, "https://a.example/hook")
        .await
        .unwrap();
    let err = events::record(&store, NODE, 2, &[paid("aa")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, EventError::Fence(FenceError::Stale { current: 3, .. })),
        "{err}"
    );
    assert!(deliveries(&store).is_empty());
}

#[tokio::test]
async fn bad_events_are_refused_whole() {
    let (_dir, store) = node_with_lease(1).await;
    registry::add(&store, NODE, "https://a.example/hook")
        .await
        .unwrap();
    let mut bad_id = paid("bb");
    bad_id.event_id = "../x".into();
    let mut bad_type = paid("cc");
    bad_type.event_type = "node_stuck_forever".into();
    let mut not_object = paid("dd");
    not_object.fields = b"[1,2]".to_vec();
    let mut not_json = paid("ee");
    not_json.fields = b"{".to_vec();
    for bad in [bad_id, bad_type, not_object, not_json] {
        // With a good event beside it: the call is refused whole.
        let err = events::record(&store, NODE, 1, &[paid("ok"), bad])
            .await
            .unwrap_err();
        assert!(matches!(err, EventError::Invalid(_)), "{err}");
    }
    let too_many: Vec<_> = (0..=events::MAX_EVENTS_PER_CALL)
        .map(|i| paid(&i.to_string()))
        .collect();
    assert!(matches!(
        events::record(&store, NODE, 1, &too_many).await,
        Err(EventError::Invalid(_))
    ));
    assert!(deliveries(&store).is_empty());
}

#[tokio::test]
async fn deleting_a_webhook_drops_its_pending_deliveries_and_repeats_fine() {
    let (_dir, store) = node_with_lease(1).await;
    registry::add(&store, NODE, "https://a.example/hook")
        .await
        .unwrap();
    registry::add(&store, NODE, "https://b.example/hook")
        .await
        .unwrap();
    events::record(&store, NODE, 1, &[paid("aa")])
        .await
        .unwrap();
    registry::delete(&store, NODE, &[1]).await.unwrap();
    registry::delete(&store, NODE, &[1, 99]).await.unwrap();
    let left: Vec<i64> = registry::list(&store, NODE)
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, vec![2]);
    let pending = deliveries(&store);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].webhook_id, 2);
}

#[tokio::test]
async fn refusals_say_what_is_wrong() {
    let (_dir, store) = node_with_lease(1).await;
    for uri in [
        "http://a.example/hook",
        "http://127.0.0.1:9/hook",
        "ftp://a.example/",
        "https://user:pw@a.example/",
        "not a uri",
    ] {
        assert!(
            matches!(
                registry::add(&store, NODE, uri).await,
                Err(WebhookError::BadUri(_))
            ),
            "{uri}"
        );
    }
    assert!(matches!(
        registry::add(&store, "node-unknown", "https://a.example/").await,
        Err(WebhookError::NotRegistered)
    ));
    assert!(matches!(
        registry::rotate(&store, NODE, 7).await,
        Err(WebhookError::NotFound(7))
    ));
    for _ in 0..MAX_PER_NODE {
        registry::add(&store, NODE, "https://a.example/hook")
            .await
            .unwrap();
    }
    assert!(matches!(
        registry::add(&store, NODE, "https://a.example/hook").await,
        Err(WebhookError::TooMany)
    ));
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one() {
    let (_dir, store) = node_with_lease(1).await;
    let added = registry::add(&store, NODE, "https://a.example/hook")
        .await
        .unwrap();
    let rotated = registry::rotate(&store, NODE, added.id).await.unwrap();
    assert_ne!(added.secret, rotated);
    let webhook = &registry::list(&store, NODE).unwrap()[0];
    assert_eq!(registry::secret(&store, webhook).unwrap(), rotated);
}
