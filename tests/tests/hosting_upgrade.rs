//! The upgrade path, with real processes: a node whose state was written to local
//! SQLite, as `lnswarm-node` did before replicated state (and still does without a
//! lease), is brought into a cluster with its mnemonic. At its first start it copies
//! that state into the replicated store once, keeps its channel and balances, and
//! never reads the local copy again: after a crash it comes back from the managers.

use std::{path::Path, time::Duration};

use lnswarm_common::api::{self, node_client::NodeClient};
use lnswarm_tests::{
    certs::TestCa,
    hosting::{DuplicateWatch, HostingCluster},
    lightning::{new_address, TestNode},
    wait,
};
use tonic::transport::Channel;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

async fn usable_channels(c: &mut NodeClient<Channel>) -> usize {
    c.list_channels(api::ListChannelsRequest {})
        .await
        .map(|r| {
            r.into_inner()
                .channels
                .iter()
                .filter(|c| c.is_usable)
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_on_local_sqlite_moves_into_the_replicated_store_once_with_its_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start(tmp.path(), 1).await;
    let watch = DuplicateWatch::start(tmp.path());

    // The old way: alice runs on local SQLite, is funded and opens a channel to
    // carol (who stays outside the cluster).
    let (words, seed) = lnswarm_common::node_keys::new_mnemonic();
    let ca = TestCa::new("standalone");
    let standalone = tmp.path().join("standalone");
    let mut old = TestNode::start_with_seed("alice", seed, &standalone, &ca, &c.regtest).await;
    let carol = TestNode::start("carol", &standalone, &ca, &c.regtest).await;
    let mut a = old.client().await;
    let address = new_address(&mut a).await;
    c.regtest.mine(101).await;
    c.regtest.send(&address, 1.0).await;
    c.regtest.mine(6).await;
    wait::until("alice's funds", Duration::from_secs(60), || {
        let mut a = a.clone();
        async move {
            let b = a.balances(api::BalancesRequest {}).await.ok()?.into_inner();
            (b.onchain_spendable_sats == 100_000_000).then_some(())
        }
    })
    .await;
    let channel_id = a
        .open_channel(api::OpenChannelRequest {
            node_id: carol.node_id.clone(),
            address: carol.ln_addr.clone(),
            amount_sats: 400_000,
            push_msat: 0,
            announce: false,
        })
        .await
        .unwrap()
        .into_inner()
        .channel_id;
    c.regtest
        .mine_after_broadcast("the funding transaction", 1, 6)
        .await;
    wait::until("the channel", Duration::from_secs(90), || {
        let mut a = a.clone();
        async move { (usable_channels(&mut a).await == 1).then_some(()) }
    })
    .await;
    let before = a
        .balances(api::BalancesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(old.stop(), "the old node stops cleanly");

    // Bring it into the cluster: its local state is where its agent keeps it.
    let alice = c.register_seed("alice", Some(&words));
    assert_eq!(alice.node_id, old.node_id);
    let node_dir = c.agents[0].data_dir.join("nodes").join(&alice.node_id);
    copy_dir(&old.storage_dir, &node_dir.join("ldk"));
    c.schedule(&alice);

    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());
    let copied = node_dir
        .join("ldk")
        .join("ldk_node_data.sqlite.copied-to-managers");
    assert!(copied.exists(), "the local store is retired after the copy");
    assert!(!node_dir.join("ldk").join("ldk_node_data.sqlite").exists());
    let chans = c.owner_json(&alice, &["channels", "--format", "json"]);
    assert!(
        chans
            .as_array()
            .unwrap()
            .iter()
            .any(|ch| ch["channel_id"] == channel_id.as_str()),
        "the channel came along: {chans}"
    );
    let after = c.owner_json(&alice, &["balances"]);
    assert_eq!(
        after["onchain_spendable_sats"],
        before.onchain_spendable_sats
    );
    assert_eq!(after["lightning_sats"], before.lightning_sats);

    // A crash brings it back from the replicated store (the local copy is gone).
    c.crash_node(&alice).await;
    c.schedule(&alice);
    c.wait_channel_usable(&alice, &channel_id).await;
    let mut cc = carol.client().await;
    let invoice = cc
        .create_invoice(api::CreateInvoiceRequest {
            amount_msat: 10_000_000,
            description: "after the upgrade".into(),
            expiry_secs: 600,
        })
        .await
        .unwrap()
        .into_inner();
    let paid = c.owner_json(&alice, &["pay", &invoice.bolt11]);
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert!(!copied.with_file_name("ldk_node_data.sqlite").exists());

    let violations = watch.finish();
    assert!(violations.is_empty(), "a node ran twice: {violations:?}");
}
