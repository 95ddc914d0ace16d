//! `lnswarmctl dev --demo`: the product's main path on the local cluster, each step
//! printed: two owners register nodes, the cluster schedules them (onto different
//! agents), one is funded on the regtest chain, it opens a channel to the other and
//! pays an invoice.

use std::time::Duration;

use anyhow::{bail, Result};
use lnswarm_common::{
    api::{
        BalancesRequest, CreateInvoiceRequest, GetInfoRequest, ListChannelsRequest,
        NewAddressRequest, OpenChannelRequest, PayRequest, PaymentStatus,
    },
    credentials::Credentials,
};
use serde_json::json;

use super::cluster::LocalCluster;
use crate::{node::register, node_api};

const STEP_TIMEOUT: Duration = Duration::from_secs(180);

fn step(n: u32, what: &str) {
    println!("==> [{n}/7] {what}");
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(cluster: &LocalCluster) -> Result<()> {
    let manager = cluster.managers[0].clone();
    let ca_pem = Credentials::load(&cluster.operator_dir)?.ca_pem;
    let app = Credentials::load(&cluster.app_dir())?;

    step(
        1,
        "register two nodes (seeds made here, sealed to the cluster)",
    );
    let mut owners = Vec::new();
    for name in ["alice", "bob"] {
        let dir = cluster.profiles().join(name);
        let (node_id, _mnemonic) = register(
            &manager,
            &ca_pem,
            &crate::node::Registration {
                device: "demo",
                network: None,
                invite_code: "",
                app: Some(&app),
                words: None,
            },
            &dir,
        )
        .await?;
        println!("    {name}: node {node_id} (profile {})", dir.display());
        owners.push((name, node_id, Credentials::load(&dir)?));
    }

    step(2, "schedule both nodes");
    let mut uris = Vec::new();
    for (name, node_id, creds) in &owners {
        let info = node_api::schedule(&manager, creds, node_id).await?;
        println!(
            "    {name}: running on agent {} at {}",
            info.agent_id, info.grpc_uri
        );
        uris.push(info.grpc_uri);
    }
    let (_, alice_id, alice_creds) = &owners[0];
    let (_, bob_id, bob_creds) = &owners[1];
    let mut alice = node_api::node_client(&manager, alice_creds, alice_id, "").await?;
    let mut bob = node_api::node_client(&manager, bob_creds, bob_id, "").await?;

    step(3, "fund alice with 1 BTC on the regtest chain");
    cluster.regtest.mine(101).await?;
    let address = alice
        .new_address(NewAddressRequest {})
        .await?
        .into_inner()
        .address;
    cluster
        .regtest
        .call("sendtoaddress", json!([address, 1.0]))
        .await?;
    cluster.regtest.mine(6).await?;
    let funded = until("alice's funds to confirm", || {
        let mut alice = alice.clone();
        async move {
            let b = alice.balances(BalancesRequest {}).await?.into_inner();
            Ok((b.onchain_spendable_sats >= 100_000_000).then_some(b.onchain_spendable_sats))
        }
    })
    .await?;
    println!("    alice has {funded} sats on chain");

    step(4, "alice opens a 500 000 sat channel to bob");
    let bob_info = bob.get_info(GetInfoRequest {}).await?.into_inner();
    let bob_port = bob_info
        .listening_addresses
        .first()
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let bob_host = uris[1]
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let channel = alice
        .open_channel(OpenChannelRequest {
            node_id: bob_id.clone(),
            address: format!("{bob_host}:{bob_port}"),
            amount_sats: 500_000,
            push_msat: 0,
            announce: false,
        })
        .await?
        .into_inner()
        .channel_id;
    println!("    channel {channel}");

    step(
        5,
        "mine the funding transaction and wait until the channel is usable",
    );
    until("the funding transaction to be broadcast", || async {
        let mempool = cluster.regtest.call("getrawmempool", json!([])).await?;
        Ok(mempool
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(()))
    })
    .await?;
    cluster.regtest.mine(6).await?;
    until("the channel to be usable", || {
        let mut alice = alice.clone();
        async move {
            let channels = alice
                .list_channels(ListChannelsRequest {})
                .await?
                .into_inner()
                .channels;
            Ok(channels.iter().any(|c| c.is_usable).then_some(()))
        }
    })
    .await?;
    println!("    the channel is usable");

    step(6, "bob creates an invoice for 25 000 sats; alice pays it");
    let invoice = bob
        .create_invoice(CreateInvoiceRequest {
            amount_msat: 25_000_000,
            description: "lnswarm demo".into(),
            expiry_secs: 3600,
        })
        .await?
        .into_inner();
    println!(
        "    invoice {}...",
        &invoice.bolt11[..40.min(invoice.bolt11.len())]
    );
    let payment = alice
        .pay(PayRequest {
            bolt11: invoice.bolt11,
            amount_msat: 0,
        })
        .await?
        .into_inner()
        .payment
        .unwrap_or_default();
    if payment.status != PaymentStatus::Succeeded as i32 {
        bail!("the payment did not succeed");
    }
    println!(
        "    paid {} msat (fee {} msat)",
        payment.amount_msat, payment.fee_msat
    );

    step(7, "balances");
    let a = alice.balances(BalancesRequest {}).await?.into_inner();
    let b = until("bob to see the payment", || {
        let mut bob = bob.clone();
        async move {
            let b = bob.balances(BalancesRequest {}).await?.into_inner();
            Ok((b.lightning_sats >= 25_000).then_some(b))
        }
    })
    .await?;
    println!(
        "    alice: {} sats in channels, {} sats on chain",
        a.lightning_sats, a.onchain_total_sats
    );
    println!("    bob:   {} sats in channels", b.lightning_sats);
    println!("demo complete");
    Ok(())
}
