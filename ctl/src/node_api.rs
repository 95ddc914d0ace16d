//! `lnswarmctl node schedule|info` (Scheduler, as the owner) and the commands that
//! go straight to the owner's node over its Node API (`getinfo`, `pay`, ...).

use std::{io::Write, time::Duration};

use anyhow::{Context, Result};
use clap::Subcommand;
use lnswarm_common::{
    api::{
        node_client::NodeClient, node_event::Event, scheduler_client::SchedulerClient,
        BalancesRequest, Channel as LnChannel, CloseChannelRequest, ConnectPeerRequest,
        CreateInvoiceRequest, GetInfoRequest, ListChannelsRequest, ListPaymentsRequest,
        NewAddressRequest, NodeInfoRequest, NodeInfoResponse, OpenChannelRequest, PayRequest,
        Payment, PaymentDirection, PaymentStatus, ScheduleRequest, SubscribeEventsRequest,
        UpgradeRequest,
    },
    credentials::Credentials,
    pki::Role,
    tls,
};
use serde_json::json;
use tonic::{transport::Channel, Status};

use crate::{
    output::{print_json, print_object, print_table, Format},
    profile::ProfileArgs,
    retry,
};

#[derive(Subcommand)]
pub enum OwnerCommand {
    /// Start the node if it is not running and print its address.
    Schedule,
    /// Restart the node on the newer lnswarm-node its agent ships, if it runs an
    /// older one (cleanly, with its channels); prints the version it ran.
    MaybeUpgrade,
    /// Where the node runs (with --wait, wait until it does), and when this
    /// device's certificate expires.
    Info {
        /// Wait until the node runs, saying how long it has waited.
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this long (`90s`, `5m`).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
        timeout: std::time::Duration,
        /// `json` (the default) or `table`.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// The node's id, network, chain tip, peers, channels and balances.
    Getinfo {
        /// `json` (the default) or `table`.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// A new on-chain address of the node's wallet.
    Newaddr,
    /// On-chain and Lightning balances.
    Balances {
        /// `json` (the default) or `table`.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Connect to a peer: NODE_ID@HOST:PORT.
    Connect { peer: String },
    /// Open a channel to NODE_ID@HOST:PORT funded with AMOUNT_SATS.
    OpenChannel {
        peer: String,
        amount_sats: u64,
        #[arg(long, default_value_t = 0)]
        push_msat: u64,
    },
    /// The node's channels, with the largest payment each can send (MAX SEND) and
    /// receive (MAX RECEIVE) now.
    Channels {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Close a channel, named by its channel id, channel point (TXID:VOUT) or short
    /// channel id, as `channels` shows them; cooperatively unless --force.
    CloseChannel {
        channel: String,
        #[arg(long)]
        force: bool,
    },
    /// Create a BOLT11 invoice (AMOUNT_MSAT 0 for any amount).
    Invoice {
        amount_msat: u64,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Pay a BOLT11 invoice.
    Pay {
        bolt11: String,
        /// For an any-amount invoice.
        #[arg(long, default_value_t = 0)]
        amount_msat: u64,
    },
    /// The node's payments.
    Payments {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Follow the node's payment and channel events (one JSON object per line).
    Events,
    /// Take the node out of the cluster for good: it stops, its whole state is
    /// encrypted to the node key and downloaded to --out (resuming FILE.part).
    /// Import it once only, with `lnswarm-node import`.
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The node's outgoing webhooks: the cluster POSTs its events there, signed.
    Webhook {
        #[command(subcommand)]
        cmd: crate::node_webhook::WebhookCommand,
    },
}

/// The channel `given` names: its channel id or its channel point (TXID:VOUT).
fn find_channel<'a>(channels: &'a [LnChannel], given: &str) -> Result<&'a LnChannel> {
    channels
        .iter()
        .find(|c| {
            c.channel_id == given
                || (!c.funding_txo.is_empty() && c.funding_txo == given)
                || (!c.short_channel_id.is_empty() && c.short_channel_id == given)
        })
        .with_context(|| {
            format!("the node has no channel {given:?} (by channel id, TXID:VOUT or short channel id); `channels` lists them")
        })
}

fn split_peer(peer: &str) -> Result<(String, String)> {
    let (id, addr) = peer
        .split_once('@')
        .context("a peer is NODE_ID@HOST:PORT")?;
    Ok((id.to_string(), addr.to_string()))
}

/// The Scheduler at `addr`; a manager that cannot be reached is UNAVAILABLE, so the
/// caller moves on to the next.
pub(crate) async fn scheduler(
    addr: &str,
    creds: &Credentials,
) -> Result<SchedulerClient<Channel>, Status> {
    let tls = creds
        .client_tls()
        .map_err(|e| Status::invalid_argument(format!("the profile's credential: {e}")))?;
    let channel = tls::connect(addr, &tls, Role::Manager)
        .await
        .map_err(retry::unreachable)?;
    Ok(SchedulerClient::new(channel))
}

/// Schedule with a progress line while waiting.
pub(crate) async fn schedule(
    manager: &str,
    creds: &Credentials,
    node_id: &str,
) -> Result<NodeInfoResponse> {
    let id = hex::decode(node_id)?;
    let managers = retry::manager_addrs(manager);
    // Schedule is safe to repeat: it asks for the node to run.
    let call = retry::idempotent(&managers, |addr| {
        let id = id.clone();
        async move {
            let mut s = scheduler(&addr, creds).await?;
            s.schedule(ScheduleRequest { node_id: id }).await
        }
    });
    tokio::pin!(call);
    let started = std::time::Instant::now();
    loop {
        tokio::select! {
            r = &mut call => {
                if started.elapsed() > Duration::from_secs(1) { eprintln!(); }
                return Ok(r?.into_inner());
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                eprint!("\rwaiting for the node to start... {}s", started.elapsed().as_secs());
                let _ = std::io::stderr().flush();
            }
        }
    }
}

async fn node_info(
    manager: &str,
    creds: &Credentials,
    node_id: &str,
    wait: Option<std::time::Duration>,
) -> Result<NodeInfoResponse, Status> {
    let id = hex::decode(node_id)
        .map_err(|_| Status::invalid_argument("the profile's node id is not hex"))?;
    Ok(retry::idempotent(&retry::manager_addrs(manager), |addr| {
        let id = id.clone();
        async move {
            let mut s = scheduler(&addr, creds).await?;
            let mut req = tonic::Request::new(NodeInfoRequest {
                node_id: id,
                wait: wait.is_some(),
            });
            if let Some(round) = wait {
                req.set_timeout(round);
            }
            s.get_node_info(req).await
        }
    })
    .await?
    .into_inner())
}

/// Long-polls in short rounds until the node runs, saying on stderr how long it
/// has waited, and gives up after `timeout` with what to do next.
async fn wait_running(
    manager: &str,
    creds: &Credentials,
    node_id: &str,
    timeout: std::time::Duration,
    profile_flag: &str,
) -> Result<NodeInfoResponse> {
    const ROUND: std::time::Duration = std::time::Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            anyhow::bail!(
                "node {node_id} did not run within {}; `lnswarmctl{profile_flag} node schedule` starts it, \
                 and an operator's `lnswarmctl node inspect {node_id}` says why it waits",
                humantime::format_duration(timeout)
            );
        }
        match node_info(manager, creds, node_id, Some(left.min(ROUND))).await {
            Ok(i) => return Ok(i),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::NotFound | tonic::Code::Cancelled
                ) =>
            {
                eprintln!(
                    "waiting for node {node_id} to run ({} s of {})",
                    started.elapsed().as_secs(),
                    humantime::format_duration(timeout)
                );
            }
            Err(s) => return Err(s.into()),
        }
    }
}

/// A Node API client for the owner's node, wherever it runs now.
pub(crate) async fn node_client(
    manager: &str,
    creds: &Credentials,
    node_id: &str,
    profile_flag: &str,
) -> Result<NodeClient<Channel>> {
    let info = node_info(manager, creds, node_id, None)
        .await
        .with_context(|| {
            format!(
                "the node is not running; start it with `lnswarmctl{profile_flag} node schedule`"
            )
        })?;
    let addr = info
        .grpc_uri
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    // The node reached must be this node: any hosted node's certificate is a
    // lightning-node certificate of this cluster.
    let channel = tls::connect(
        &addr,
        &creds.client_tls()?,
        tls::ServerIdentity::exact(Role::Node, node_id),
    )
    .await
    .with_context(|| format!("connecting to the node at {addr}"))?;
    Ok(NodeClient::new(channel))
}

fn payment_json(p: &Payment) -> serde_json::Value {
    json!({
        "payment_id": p.payment_id,
        "payment_hash": p.payment_hash,
        "amount_msat": p.amount_msat,
        "fee_msat": p.fee_msat,
        "direction": match PaymentDirection::try_from(p.direction) { Ok(PaymentDirection::Inbound) => "inbound", _ => "outbound" },
        "status": match PaymentStatus::try_from(p.status) {
            Ok(PaymentStatus::Succeeded) => "succeeded",
            Ok(PaymentStatus::Failed) => "failed",
            _ => "pending",
        },
        "latest_update_unix": p.latest_update_unix,
    })
}

fn channel_json(c: &LnChannel) -> serde_json::Value {
    json!({
        "channel_id": c.channel_id,
        "counterparty_node_id": c.counterparty_node_id,
        "funding_txo": c.funding_txo,
        "short_channel_id": c.short_channel_id,
        "capacity_sats": c.capacity_sats,
        "outbound_capacity_msat": c.outbound_capacity_msat,
        "inbound_capacity_msat": c.inbound_capacity_msat,
        "max_send_msat": c.max_send_msat,
        "max_receive_msat": c.max_receive_msat,
        "confirmations": c.confirmations,
        "is_channel_ready": c.is_channel_ready,
        "is_usable": c.is_usable,
    })
}

pub async fn run(
    profile: &ProfileArgs,
    manager_override: Option<String>,
    cmd: OwnerCommand,
) -> Result<()> {
    let (info, creds) = profile.load()?;
    let manager = manager_override.unwrap_or(info.manager.clone());
    let creds =
        crate::device_renewal::renew_if_rotating(&profile.dir()?, &info, creds, &manager).await;
    let node_id = info.node_id.as_str();
    let flag = profile.flag();
    match cmd {
        OwnerCommand::Export { out } => crate::node_export::run(&manager, &creds, &out).await?,
        OwnerCommand::Webhook { cmd } => {
            crate::node_webhook::run(&manager, &creds, node_id, cmd).await?
        }
        OwnerCommand::Schedule => {
            let i = schedule(&manager, &creds, node_id).await?;
            println!("{}", i.grpc_uri);
        }
        OwnerCommand::MaybeUpgrade => {
            // Safe to repeat: a node already upgrading or current answers nothing.
            let creds = &creds;
            let old = retry::idempotent(&retry::manager_addrs(&manager), |addr| async move {
                scheduler(&addr, creds)
                    .await?
                    .maybe_upgrade(UpgradeRequest::default())
                    .await
            })
            .await?
            .into_inner()
            .old_version;
            if old.is_empty() {
                println!("nothing to upgrade: the node runs the lnswarm-node its agent ships, or is not running");
            } else {
                println!("upgrading from {old}: the node restarts on its agent's lnswarm-node (follow it with `lnswarmctl node info --wait`)");
            }
        }
        OwnerCommand::Info {
            wait,
            timeout,
            format,
        } => {
            let i = if wait {
                wait_running(&manager, &creds, node_id, timeout, &flag).await?
            } else {
                node_info(&manager, &creds, node_id, None).await?
            };
            print_object(
                format,
                &json!({
                    "node_id": hex::encode(&i.node_id),
                    "grpc_uri": i.grpc_uri,
                    "agent_id": i.agent_id,
                    "task_id": i.task_id,
                    // The device certificate this profile uses; Recover or pairing
                    // gives a new one.
                    "device_cert_expires": crate::output::cert_expiry(&creds.cert_pem),
                }),
            );
        }
        OwnerCommand::Getinfo { format } => {
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .get_info(GetInfoRequest {})
                .await?
                .into_inner();
            let b = r.balances.unwrap_or_default();
            print_object(
                format,
                &json!({
                    "node_id": r.node_id,
                    "network": r.network,
                    "block_height": r.block_height,
                    "block_hash": r.block_hash,
                    "num_peers": r.num_peers,
                    "num_channels": r.num_channels,
                    "num_usable_channels": r.num_usable_channels,
                    "listening_addresses": r.listening_addresses,
                    "onchain_total_sats": b.onchain_total_sats,
                    "onchain_spendable_sats": b.onchain_spendable_sats,
                    "lightning_sats": b.lightning_sats,
                    "pending_sweep_sats": b.pending_sweep_sats,
                }),
            );
        }
        OwnerCommand::Newaddr => {
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .new_address(NewAddressRequest {})
                .await?
                .into_inner();
            println!("{}", r.address);
        }
        OwnerCommand::Balances { format } => {
            let b = node_client(&manager, &creds, node_id, &flag)
                .await?
                .balances(BalancesRequest {})
                .await?
                .into_inner();
            print_object(
                format,
                &json!({
                    "onchain_total_sats": b.onchain_total_sats,
                    "onchain_spendable_sats": b.onchain_spendable_sats,
                    "lightning_sats": b.lightning_sats,
                    "pending_sweep_sats": b.pending_sweep_sats,
                }),
            );
        }
        OwnerCommand::Connect { peer } => {
            let (id, address) = split_peer(&peer)?;
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .connect_peer(ConnectPeerRequest {
                    node_id: id.clone(),
                    address: address.clone(),
                })
                .await?
                .into_inner();
            if r.already_connected {
                println!(
                    "already connected to {id} at {}; {address} was not tried",
                    r.connected_address
                );
            } else {
                println!("connected");
            }
        }
        OwnerCommand::OpenChannel {
            peer,
            amount_sats,
            push_msat,
        } => {
            let (id, address) = split_peer(&peer)?;
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .open_channel(OpenChannelRequest {
                    node_id: id,
                    address,
                    amount_sats,
                    push_msat,
                    announce: false,
                })
                .await?
                .into_inner();
            println!("{}", r.channel_id);
        }
        OwnerCommand::Channels { format } => {
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .list_channels(ListChannelsRequest {})
                .await?
                .into_inner();
            match format {
                Format::Json => print_json(&json!(r
                    .channels
                    .iter()
                    .map(channel_json)
                    .collect::<Vec<_>>())),
                Format::Table => print_table(
                    &[
                        "CHANNEL",
                        "CHANNEL POINT",
                        "SCID",
                        "PEER",
                        "CAPACITY SATS",
                        "OUT MSAT",
                        "IN MSAT",
                        "MAX SEND MSAT",
                        "MAX RECEIVE MSAT",
                        "READY",
                        "USABLE",
                    ],
                    &r.channels
                        .iter()
                        .map(|c| {
                            vec![
                                c.channel_id.clone(),
                                c.funding_txo.clone(),
                                c.short_channel_id.clone(),
                                c.counterparty_node_id.clone(),
                                c.capacity_sats.to_string(),
                                c.outbound_capacity_msat.to_string(),
                                c.inbound_capacity_msat.to_string(),
                                c.max_send_msat.to_string(),
                                c.max_receive_msat.to_string(),
                                c.is_channel_ready.to_string(),
                                c.is_usable.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        OwnerCommand::CloseChannel { channel, force } => {
            let mut node = node_client(&manager, &creds, node_id, &flag).await?;
            let channels = node
                .list_channels(ListChannelsRequest {})
                .await?
                .into_inner()
                .channels;
            let c = find_channel(&channels, &channel)?;
            node.close_channel(CloseChannelRequest {
                channel_id: c.channel_id.clone(),
                counterparty_node_id: c.counterparty_node_id.clone(),
                force,
            })
            .await?;
            println!("closing {} with {}", c.channel_id, c.counterparty_node_id);
        }
        OwnerCommand::Invoice {
            amount_msat,
            description,
        } => {
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .create_invoice(CreateInvoiceRequest {
                    amount_msat,
                    description,
                    expiry_secs: 3600,
                })
                .await?
                .into_inner();
            println!("{}", r.bolt11);
        }
        OwnerCommand::Pay {
            bolt11,
            amount_msat,
        } => {
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .pay(PayRequest {
                    bolt11,
                    amount_msat,
                })
                .await?
                .into_inner();
            print_json(&r.payment.as_ref().map(payment_json).unwrap_or_default());
        }
        OwnerCommand::Payments { format } => {
            let r = node_client(&manager, &creds, node_id, &flag)
                .await?
                .list_payments(ListPaymentsRequest {})
                .await?
                .into_inner();
            match format {
                Format::Json => print_json(&json!(r
                    .payments
                    .iter()
                    .map(payment_json)
                    .collect::<Vec<_>>())),
                Format::Table => print_table(
                    &["HASH", "DIRECTION", "STATUS", "AMOUNT MSAT", "FEE MSAT"],
                    &r.payments
                        .iter()
                        .map(|p| {
                            let j = payment_json(p);
                            vec![
                                p.payment_hash.clone(),
                                j["direction"].as_str().unwrap_or_default().to_string(),
                                j["status"].as_str().unwrap_or_default().to_string(),
                                p.amount_msat.to_string(),
                                p.fee_msat.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        OwnerCommand::Events => {
            let mut stream = node_client(&manager, &creds, node_id, &flag)
                .await?
                .subscribe_events(SubscribeEventsRequest {})
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                let line = match event.event {
                    Some(Event::PaymentReceived(p)) => {
                        json!({"event": "payment_received", "payment": p.payment.as_ref().map(payment_json), "reason": p.reason})
                    }
                    Some(Event::PaymentSent(p)) => {
                        json!({"event": "payment_sent", "payment": p.payment.as_ref().map(payment_json), "reason": p.reason})
                    }
                    Some(Event::PaymentFailed(p)) => {
                        json!({"event": "payment_failed", "payment": p.payment.as_ref().map(payment_json), "reason": p.reason})
                    }
                    Some(Event::Channel(c)) => {
                        json!({"event": "channel", "kind": c.kind, "channel_id": c.channel_id, "counterparty_node_id": c.counterparty_node_id, "reason": c.reason})
                    }
                    None => continue,
                };
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_found_by_its_id_or_its_channel_point() {
        let channels = vec![LnChannel {
            channel_id: "ab".repeat(32),
            counterparty_node_id: "02".to_string() + &"cd".repeat(32),
            funding_txo: format!("{}:1", "ef".repeat(32)),
            short_channel_id: "103x1x1".into(),
            ..Default::default()
        }];
        let by_id = find_channel(&channels, &"ab".repeat(32)).unwrap();
        let by_point = find_channel(&channels, &format!("{}:1", "ef".repeat(32))).unwrap();
        assert_eq!(by_id, by_point);
        assert_eq!(find_channel(&channels, "103x1x1").unwrap(), by_id);
        let e = find_channel(&channels, "nope").unwrap_err().to_string();
        assert!(e.contains("no channel \"nope\""), "{e}");
    }
}
