//! What a hosted node refuses, as a caller sees it: the Node API admits only its
//! owner's certificate, bad input gets a clear gRPC error and the node keeps
//! running, and a node given a seed that is not its own will not start.

use std::time::Duration;

use lnswarm_common::{api, pki::Role};
use lnswarm_tests::{
    certs::TestCa,
    lightning::{node_id_of, seed, NodeLab},
    process::Proc,
};
use tonic::Code;

#[tokio::test]
async fn node_api_admits_only_the_owner_of_this_node() {
    let lab = NodeLab::start("cluster-refusals").await;
    let ca = &lab.ca;
    lab.chain.mine(1).await;
    let node = lab.node("alice").await;

    // The owner gets in.
    let info = node
        .client()
        .await
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, node.node_id);
    assert_eq!(info.network, "regtest");

    let no_cert = node
        .client_as(None)
        .await
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(no_cert.code(), Code::Unauthenticated, "{no_cert:?}");

    let other_owner = ca.mint(Role::User, &format!("{}/phone", node_id_of(&seed("bob"))));
    for (who, creds) in [
        ("worker", ca.mint(Role::Worker, "agent-1")),
        ("manager", ca.mint(Role::Manager, "manager-1")),
        ("operator", ca.mint(Role::Operator, "ops")),
        ("another node's owner", other_owner),
        (
            "the node's own server certificate",
            ca.mint(Role::Node, &node.node_id),
        ),
    ] {
        let status = node
            .client_as(Some(&creds))
            .await
            .get_info(api::GetInfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
        let status = node
            .client_as(Some(&creds))
            .await
            .pay(api::PayRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{who} on Pay: {status:?}"
        );
    }

    // A certificate from another cluster's CA is not a certificate of this cluster.
    let foreign =
        TestCa::new("cluster-refusals").mint(Role::User, &format!("{}/phone", node.node_id));
    let mut foreign = foreign;
    foreign.ca_pem = node.ca_pem.clone();
    let status = node
        .client_as(Some(&foreign))
        .await
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_node_keeps_running() {
    let lab = NodeLab::start("cluster-bad-input").await;
    lab.chain.mine(1).await;
    let mut node = lab.node("carol").await;
    let mut c = node.client().await;
    let stranger = node_id_of(&seed("stranger"));

    expect(
        c.pay(api::PayRequest {
            bolt11: "lnbcrt1notaninvoice".into(),
            amount_msat: 0,
        })
        .await,
        Code::InvalidArgument,
        "invalid bolt11",
    );
    // An any-amount invoice paid with zero, and an amount above all bitcoin.
    let any = c
        .create_invoice(api::CreateInvoiceRequest {
            amount_msat: 0,
            description: "tip".into(),
            expiry_secs: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(any.bolt11.starts_with("lnbcrt"), "{}", any.bolt11);
    expect(
        c.pay(api::PayRequest {
            bolt11: any.bolt11.clone(),
            amount_msat: 0,
        })
        .await,
        Code::InvalidArgument,
        "zero amount",
    );
    expect(
        c.pay(api::PayRequest {
            bolt11: any.bolt11.clone(),
            amount_msat: u64::MAX,
        })
        .await,
        Code::InvalidArgument,
        "oversize amount",
    );
    expect(
        c.create_invoice(api::CreateInvoiceRequest {
            amount_msat: u64::MAX,
            description: String::new(),
            expiry_secs: 0,
        })
        .await,
        Code::InvalidArgument,
        "oversize invoice",
    );
    expect(
        c.open_channel(api::OpenChannelRequest {
            node_id: stranger.clone(),
            amount_sats: 0,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "zero channel",
    );
    expect(
        c.open_channel(api::OpenChannelRequest {
            node_id: "nope".into(),
            amount_sats: 100_000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "malformed node id",
    );
    expect(
        c.open_channel(api::OpenChannelRequest {
            node_id: stranger.clone(),
            amount_sats: 100_000,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "unknown peer without an address",
    );
    expect(
        c.open_channel(api::OpenChannelRequest {
            node_id: stranger.clone(),
            address: "127.0.0.1:9".into(),
            amount_sats: 100_000,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "insufficient funds",
    );
    expect(
        c.disconnect_peer(api::DisconnectPeerRequest {
            node_id: stranger.clone(),
        })
        .await,
        Code::NotFound,
        "unknown peer",
    );
    expect(
        c.close_channel(api::CloseChannelRequest {
            channel_id: "12345".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "unknown channel",
    );
    expect(
        c.close_channel(api::CloseChannelRequest {
            channel_id: "not-a-channel".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "malformed channel id",
    );
    expect(
        c.connect_peer(api::ConnectPeerRequest {
            node_id: stranger.clone(),
            address: "no port".into(),
        })
        .await,
        Code::InvalidArgument,
        "malformed address",
    );
    expect(
        c.connect_peer(api::ConnectPeerRequest {
            node_id: stranger.clone(),
            address: "127.0.0.1:9".into(),
        })
        .await,
        Code::Unavailable,
        "unreachable peer",
    );

    // Still running and answering.
    assert!(
        node.proc.try_exit().is_none(),
        "node exited:\n{}",
        node.proc.log_text()
    );
    let info = c
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, node.node_id);
    let log = node.proc.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains(&hex::encode(node.seed)),
        "the seed is in the log"
    );

    // SIGTERM stops it cleanly.
    assert!(
        node.stop(),
        "exit status after SIGTERM\n{}",
        node.proc.log_text()
    );
}

#[tokio::test]
async fn a_node_refuses_to_start_with_a_seed_that_is_not_its_own() {
    let lab = NodeLab::start("cluster-wrong-seed").await;
    let dir = lab.dir.path();
    let mut node = lab.node("dave").await;
    assert!(node.stop());

    // Erin's seed offered for Dave's node.
    let cmd = node.command(&node.node_id);
    let mut p = Proc::spawn_with_stdin("wrong-seed", cmd, dir, &seed("erin"));
    let status = lnswarm_tests::wait::until("the node to exit", Duration::from_secs(30), || {
        let s = p.try_exit();
        async move { s }
    })
    .await;
    assert!(!status.success(), "started with the wrong seed: {status}");
    let log = p.log_text();
    assert!(log.contains("refusing to start"), "{log}");
    assert!(log.contains(&node.node_id), "{log}");

    // A seed cut short.
    let mut p = Proc::spawn_with_stdin("short-seed", node.command(&node.node_id), dir, &[7u8; 20]);
    let status = lnswarm_tests::wait::until("the node to exit", Duration::from_secs(30), || {
        let s = p.try_exit();
        async move { s }
    })
    .await;
    assert!(!status.success());
    assert!(
        p.log_text().contains("expected 64 seed bytes"),
        "{}",
        p.log_text()
    );

    // The refused attempts left the node's state alone: with its own seed it starts.
    node.restart().await;
    let info = node
        .client()
        .await
        .get_info(api::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, node.node_id);
}

fn expect<T>(r: Result<T, tonic::Status>, code: Code, what: &str) -> tonic::Status {
    let s = r
        .err()
        .unwrap_or_else(|| panic!("{what}: expected {code:?}, got success"));
    assert_eq!(s.code(), code, "{what}: {s:?}");
    assert!(!s.message().is_empty(), "{what}: no message");
    s
}
