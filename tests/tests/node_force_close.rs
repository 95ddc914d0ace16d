//! A force close through the Node API: A publishes its commitment transaction, B gets
//! its balance at once, A gets the rest after its to-self delay; both on chain.

use std::time::Duration;

use lnswarm_common::api;
use lnswarm_tests::{
    lightning::{balances, channels, new_address, NodeLab, Regtest},
    wait,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(240);

/// A chain that keeps moving: one block about every half second, confirming
/// whatever the nodes broadcast and letting claims reach the confirmations LDK waits
/// for (6 before it sweeps an output).
async fn keep_mining(chain: &Regtest) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    chain.mine(1).await;
}

#[tokio::test]
async fn force_close_returns_both_sides_funds_on_chain() {
    let lab = NodeLab::start("cluster-force-close").await;
    let chain = &lab.chain;
    chain.mine(101).await;
    let a = lab.node("frank").await;
    let b = lab.node("grace").await;
    let (mut ca_, mut cb) = (a.client().await, b.client().await);

    let addr_a = new_address(&mut ca_).await;
    let addr_b = new_address(&mut cb).await;
    chain.send(&addr_a, 1.0).await;
    chain.send(&addr_b, 0.1).await;
    chain.mine(1).await;
    wait::until("funds", PATIENCE, || {
        let (mut ca_, mut cb) = (ca_.clone(), cb.clone());
        async move {
            (balances(&mut ca_).await.onchain_spendable_sats > 0
                && balances(&mut cb).await.onchain_spendable_sats > 0)
                .then_some(())
        }
    })
    .await;

    let channel_id = ca_
        .open_channel(api::OpenChannelRequest {
            node_id: b.node_id.clone(),
            address: b.ln_addr.clone(),
            amount_sats: 200_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .channel_id;
    wait::until("the channel to be usable", PATIENCE, || {
        let (mut ca_, mut cb) = (ca_.clone(), cb.clone());
        let chain = &chain;
        async move {
            if chain
                .rpc("getrawmempool", json!([]))
                .await
                .ok()?
                .as_array()?
                .len()
                == 1
            {
                chain.mine(6).await;
            }
            let (x, y) = (channels(&mut ca_).await, channels(&mut cb).await);
            (x.first()?.is_usable && y.first()?.is_usable).then_some(())
        }
    })
    .await;
    let invoice = cb
        .create_invoice(api::CreateInvoiceRequest {
            amount_msat: 20_000_000,
            description: "x".into(),
            expiry_secs: 0,
        })
        .await
        .unwrap()
        .into_inner();
    ca_.pay(api::PayRequest {
        bolt11: invoice.bolt11,
        amount_msat: 0,
    })
    .await
    .unwrap();

    let a_before = balances(&mut ca_).await.onchain_total_sats;
    let b_before = balances(&mut cb).await.onchain_total_sats;
    ca_.close_channel(api::CloseChannelRequest {
        channel_id: channel_id.clone(),
        counterparty_node_id: String::new(),
        force: true,
    })
    .await
    .unwrap();

    // B's side comes back soon after the commitment transaction confirms.
    wait::until("B's balance back on chain", PATIENCE, || {
        let mut cb = cb.clone();
        let chain = &chain;
        async move {
            keep_mining(chain).await;
            let bb = balances(&mut cb).await;
            (channels(&mut cb).await.is_empty() && bb.onchain_total_sats > b_before + 19_000)
                .then_some(())
        }
    })
    .await;

    // A's side is locked for its to-self delay, then swept to its wallet.
    chain.mine(150).await;
    wait::until("A's balance back on chain", PATIENCE, || {
        let mut ca_ = ca_.clone();
        let chain = &chain;
        async move {
            keep_mining(chain).await;
            let ba = balances(&mut ca_).await;
            (channels(&mut ca_).await.is_empty() && ba.onchain_total_sats > a_before + 170_000)
                .then_some(())
        }
    })
    .await;
}
