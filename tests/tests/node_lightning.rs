//! Two hosted nodes on one `lnswarm-regtest` chain, driven only through the Node
//! API: fund A, open a channel A→B, pay B's invoice, see the payment on both sides
//! and on B's event stream, restart A from its storage, and close cooperatively
//! with the funds back on chain.

use std::time::Duration;

use lnswarm_common::api::{self, node_event};
use lnswarm_tests::{
    lightning::{balances, channels, new_address, NodeLab},
    wait,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Waits until the mempool holds a transaction, then mines `blocks`.
#[tokio::test]
async fn two_nodes_open_a_channel_pay_restart_and_close() {
    let lab = NodeLab::start("cluster-lightning").await;
    let chain = &lab.chain;
    chain.mine(101).await;
    let mut a = lab.node("alice").await;
    let b = lab.node("bob").await;
    let mut ca_ = a.client().await;
    let mut cb = b.client().await;

    // Fund both wallets (B needs a little for the anchor-channel reserve).
    let addr_a = new_address(&mut ca_).await;
    let addr_b = new_address(&mut cb).await;
    chain.send(&addr_a, 1.0).await;
    chain.send(&addr_b, 0.1).await;
    chain.mine(1).await;
    wait::until("A and B see their funds", MINUTE, || {
        let (mut ca_, mut cb) = (ca_.clone(), cb.clone());
        async move {
            let (ba, bb) = (balances(&mut ca_).await, balances(&mut cb).await);
            (ba.onchain_spendable_sats == 100_000_000 && bb.onchain_spendable_sats == 10_000_000)
                .then_some(())
        }
    })
    .await;

    // B's event stream, from before anything happens.
    let mut stream = cb
        .subscribe_events(api::SubscribeEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(e)) = stream.message().await {
            let _ = events_tx.send(e);
        }
    });

    // A opens a 500k sat channel to B.
    let channel_id = ca_
        .open_channel(api::OpenChannelRequest {
            node_id: b.node_id.clone(),
            address: b.ln_addr.clone(),
            amount_sats: 500_000,
            push_msat: 0,
            announce: false,
        })
        .await
        .unwrap()
        .into_inner()
        .channel_id;
    chain
        .mine_after_broadcast("the funding transaction", 1, 6)
        .await;
    wait::until("the channel to be usable on both sides", MINUTE, || {
        let (mut ca_, mut cb) = (ca_.clone(), cb.clone());
        async move {
            let (x, y) = (channels(&mut ca_).await, channels(&mut cb).await);
            (x.len() == 1 && x[0].is_usable && y.len() == 1 && y[0].is_usable).then_some(())
        }
    })
    .await;
    let ch = &channels(&mut ca_).await[0];
    assert_eq!(ch.channel_id, channel_id);
    assert_eq!(ch.counterparty_node_id, b.node_id);
    assert_eq!(ch.capacity_sats, 500_000);
    assert!(ch.confirmations >= 6, "{ch:?}");
    let info = ca_
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.num_usable_channels, 1);
    assert_eq!(info.num_peers, 1);
    assert_eq!(info.block_height as u64, chain.height().await);

    // B invoices 50k sats; A pays.
    let invoice = cb
        .create_invoice(api::CreateInvoiceRequest {
            amount_msat: 50_000_000,
            description: "coffee".into(),
            expiry_secs: 600,
        })
        .await
        .unwrap()
        .into_inner();
    let paid = ca_
        .pay(api::PayRequest {
            bolt11: invoice.bolt11.clone(),
            amount_msat: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        paid.status,
        api::PaymentStatus::Succeeded as i32,
        "{paid:?}"
    );
    assert_eq!(paid.amount_msat, 50_000_000);
    assert_eq!(paid.payment_hash, invoice.payment_hash);

    // Paying the same invoice twice is refused.
    let again = ca_
        .pay(api::PayRequest {
            bolt11: invoice.bolt11.clone(),
            amount_msat: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");

    // Paying one's own invoice says so (not "already initiated").
    let own = cb
        .create_invoice(api::CreateInvoiceRequest {
            amount_msat: 1_000,
            description: "self".into(),
            expiry_secs: 600,
        })
        .await
        .unwrap()
        .into_inner();
    let err = cb
        .pay(api::PayRequest {
            bolt11: own.bolt11,
            amount_msat: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("cannot pay itself"), "{err:?}");

    // Connecting to a peer it is connected to already says so, and names where;
    // the unreachable address given is not reported as "connected".
    let r = ca_
        .connect_peer(api::ConnectPeerRequest {
            node_id: b.node_id.clone(),
            address: "127.0.0.1:9".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.already_connected, "{r:?}");
    assert!(!r.connected_address.is_empty(), "{r:?}");

    // Both sides list it, and the balances moved by the amount.
    let out: Vec<_> = ca_
        .list_payments(api::ListPaymentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].direction, api::PaymentDirection::Outbound as i32);
    assert_eq!(out[0].payment_hash, invoice.payment_hash);
    let received = wait::until("B to list the payment as received", MINUTE, || {
        let mut cb = cb.clone();
        let hash = invoice.payment_hash.clone();
        async move {
            let ps = cb
                .list_payments(api::ListPaymentsRequest {})
                .await
                .ok()?
                .into_inner()
                .payments;
            ps.into_iter().find(|p| {
                p.payment_hash == hash && p.status == api::PaymentStatus::Succeeded as i32
            })
        }
    })
    .await;
    assert_eq!(received.direction, api::PaymentDirection::Inbound as i32);
    assert_eq!(received.amount_msat, 50_000_000);
    let (ba, bb) = (balances(&mut ca_).await, balances(&mut cb).await);
    assert_eq!(bb.lightning_sats, 50_000, "{bb:?}");
    assert!(
        (440_000..450_000).contains(&ba.lightning_sats),
        "A keeps the capacity minus the payment and commitment fees: {ba:?}"
    );

    // B's stream reported the payment (and the channel before it).
    let mut saw_ready = false;
    let got = loop {
        let e = tokio::time::timeout(MINUTE, events.recv())
            .await
            .expect("B's event stream reports the payment")
            .expect("stream open");
        match e.event {
            Some(node_event::Event::Channel(c))
                if c.kind == api::ChannelEventKind::Ready as i32 =>
            {
                saw_ready = true
            }
            Some(node_event::Event::PaymentReceived(p)) => break p.payment.unwrap(),
            _ => {}
        }
    };
    assert!(saw_ready, "B's stream reported the channel as ready first");
    assert_eq!(got.payment_hash, invoice.payment_hash);
    assert_eq!(got.amount_msat, 50_000_000);

    // Restart A from its storage: same node id, the channel is still there.
    assert!(a.stop(), "A exits 0 on SIGTERM\n{}", a.proc.log_text());
    a.restart().await;
    let mut ca_ = a.client().await;
    let info = ca_
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, a.node_id);
    let after = channels(&mut ca_).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].channel_id, channel_id);
    let out: Vec<_> = ca_
        .list_payments(api::ListPaymentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(out.len(), 1, "A remembers its payment");
    wait::until("A to reconnect to B", MINUTE, || {
        let mut ca_ = ca_.clone();
        async move {
            channels(&mut ca_)
                .await
                .first()
                .filter(|c| c.is_usable)
                .map(|_| ())
        }
    })
    .await;

    // Cooperative close: the funds come back on chain.
    let a_onchain = balances(&mut ca_).await.onchain_total_sats;
    let b_onchain = balances(&mut cb).await.onchain_total_sats;
    ca_.close_channel(api::CloseChannelRequest {
        channel_id: channel_id.clone(),
        counterparty_node_id: b.node_id.clone(),
        force: false,
    })
    .await
    .unwrap();
    chain
        .mine_after_broadcast("the closing transaction", 1, 1)
        .await;
    wait::until("the closing outputs in both wallets", MINUTE, || {
        let (mut ca_, mut cb) = (ca_.clone(), cb.clone());
        async move {
            let (ba, bb) = (balances(&mut ca_).await, balances(&mut cb).await);
            let closed = channels(&mut ca_).await.is_empty() && channels(&mut cb).await.is_empty();
            (closed
                && bb.onchain_total_sats == b_onchain + 50_000
                && ba.onchain_total_sats > a_onchain + 440_000)
                .then_some(())
        }
    })
    .await;
    let closed = loop {
        let e = tokio::time::timeout(MINUTE, events.recv())
            .await
            .expect("close event")
            .expect("stream open");
        if let Some(node_event::Event::Channel(c)) = e.event {
            if c.kind == api::ChannelEventKind::Closed as i32 {
                break c;
            }
        }
    };
    assert!(!closed.channel_id.is_empty());
    assert_eq!(closed.counterparty_node_id, a.node_id);
}
