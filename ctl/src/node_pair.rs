//! `lnswarmctl node pair request|ls|approve`: pairing a new device with a node
//! without its mnemonic. The new device asks (`request`, no credential needed) and
//! waits; on a device already paired, the owner lists the requests (`ls`) and
//! approves or refuses one (`approve ID [--refuse]`), answering on the
//! SignerRequestsStream as a signer app would. Both devices show the request's
//! fingerprint, so the owner can tell it is their new device's.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lnswarm_common::{
    api::{
        signer_response, ApprovePairingResponse, GetPairingRequest, ListPairingsRequest,
        PairDeviceRequest, Pairing, PairingState, SignerResponse,
    },
    credentials::Credentials,
    pki::{new_key_and_csr, Role},
};
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    connection::Connection,
    node::{anonymous_scheduler, refuse_to_replace, Trust},
    node_api::scheduler,
    output::{ms_time, print_json, print_table, Format},
    profile::{save, ProfileArgs, ProfileInfo},
    retry,
};

#[derive(Subcommand)]
pub enum PairCommand {
    /// On the new device: ask to be paired with NODE_ID and wait for the owner's
    /// answer; the credential goes into this profile.
    Request {
        node_id: String,
        #[command(flatten)]
        trust: Trust,
        /// This device's name (bound into its certificate).
        #[arg(long)]
        device: String,
        /// Ask only to read (info, balances, channels, payments, events).
        #[arg(long)]
        read_only: bool,
        /// Replace the profile if it already holds a node's credential.
        #[arg(long)]
        force: bool,
    },
    /// On a paired device: the node's pairing requests.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// On a paired device: approve pairing request ID (or refuse it).
    Approve {
        id: u64,
        #[arg(long)]
        refuse: bool,
    },
}

/// How long `approve` waits for the request to come on the stream and be decided.
const DECIDE_BOUND: Duration = Duration::from_secs(30);

fn state_name(state: i32) -> &'static str {
    match PairingState::try_from(state) {
        Ok(PairingState::PairingPending) => "pending",
        Ok(PairingState::PairingApproved) => "approved",
        Ok(PairingState::PairingRefused) => "refused",
        Ok(PairingState::PairingExpired) => "expired",
        Err(_) => "unknown",
    }
}

fn access(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "full"
    }
}

pub async fn run(conn: &Connection, profile: &ProfileArgs, cmd: PairCommand) -> Result<()> {
    match cmd {
        PairCommand::Request {
            node_id,
            trust,
            device,
            read_only,
            force,
        } => request(conn, profile, &node_id, &trust, &device, read_only, force).await,
        PairCommand::Ls { format } => {
            let (info, creds) = profile.load()?;
            let manager = conn.manager.clone().unwrap_or(info.manager.clone());
            let pairings = list(&manager, &creds, &info.node_id).await?;
            match format {
                Format::Json => print_json(&json!(pairings
                    .iter()
                    .map(|p| {
                        let r = p.request.clone().unwrap_or_default();
                        json!({
                            "id": p.request_id,
                            "device": r.device,
                            "access": access(r.read_only),
                            "fingerprint": r.fingerprint,
                            "state": state_name(p.state),
                            "expires": ms_time(r.expires_unix_ms),
                        })
                    })
                    .collect::<Vec<_>>())),
                Format::Table => print_table(
                    &["ID", "DEVICE", "ACCESS", "FINGERPRINT", "STATE", "EXPIRES"],
                    &pairings
                        .iter()
                        .map(|p| {
                            let r = p.request.clone().unwrap_or_default();
                            vec![
                                p.request_id.to_string(),
                                r.device,
                                access(r.read_only).into(),
                                r.fingerprint,
                                state_name(p.state).into(),
                                ms_time(r.expires_unix_ms),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        PairCommand::Approve { id, refuse } => {
            let (info, creds) = profile.load()?;
            let manager = conn.manager.clone().unwrap_or(info.manager.clone());
            approve(&manager, &creds, &info.node_id, id, !refuse).await
        }
    }
}

async fn list(manager: &str, creds: &Credentials, node_id: &str) -> Result<Vec<Pairing>> {
    let node_id = hex::decode(node_id).context("the profile's node id is not hex")?;
    Ok(retry::idempotent(&retry::manager_addrs(manager), |addr| {
        let req = ListPairingsRequest {
            node_id: node_id.clone(),
        };
        async move { scheduler(&addr, creds).await?.list_pairings(req).await }
    })
    .await
    .context("ListPairings")?
    .into_inner()
    .pairings)
}

async fn request(
    conn: &Connection,
    profile: &ProfileArgs,
    node_id: &str,
    trust: &Trust,
    device: &str,
    read_only: bool,
    force: bool,
) -> Result<()> {
    let dir = profile.dir()?;
    refuse_to_replace(&dir, force)?;
    let manager = conn.manager_addr()?;
    let ca_pem = trust.ca_pem(&manager).await?;
    let raw_node_id = hex::decode(node_id).context("NODE_ID must be the node's id in hex")?;
    let role = if read_only { Role::Viewer } else { Role::User };
    let key = new_key_and_csr(device, Some(role))?;
    let mut scheduler = anonymous_scheduler(&manager, &ca_pem, None).await?;
    let asked = scheduler
        .pair_device(PairDeviceRequest {
            node_id: raw_node_id.clone(),
            device: device.to_string(),
            csr: key.csr_pem.clone().into_bytes(),
            read_only,
        })
        .await
        .context("PairDevice")?
        .into_inner();
    println!("pairing request: {}", asked.request_id);
    println!("fingerprint: {}", asked.fingerprint);
    eprintln!(
        "on a device paired with the node, check the fingerprint and run: lnswarmctl node pair approve {}\nwaiting for the answer (the request expires at {})...",
        asked.request_id,
        ms_time(asked.expires_unix_ms)
    );
    loop {
        let answer = scheduler
            .get_pairing(GetPairingRequest {
                node_id: raw_node_id.clone(),
                request_id: asked.request_id,
                session_secret: asked.session_secret.clone(),
                wait: true,
            })
            .await;
        let answer = match answer {
            Ok(a) => a.into_inner(),
            // A leader change or a manager going away: ask again (reading is safe).
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                scheduler = anonymous_scheduler(&manager, &ca_pem, None).await?;
                continue;
            }
            Err(s) => return Err(s).context("GetPairing"),
        };
        match PairingState::try_from(answer.state) {
            Ok(PairingState::PairingPending) => continue,
            Ok(PairingState::PairingApproved) => {
                save(
                    &dir,
                    &ProfileInfo {
                        node_id: node_id.to_string(),
                        device: device.to_string(),
                        manager: manager.clone(),
                        network: String::new(),
                    },
                    &Credentials {
                        cert_pem: answer.device_cert,
                        key_pem: key.key_pem,
                        ca_pem: if answer.root_ca.is_empty() {
                            ca_pem
                        } else {
                            answer.root_ca
                        },
                    },
                )?;
                println!("paired ({} access)", access(read_only));
                println!("profile: {}", dir.display());
                return Ok(());
            }
            Ok(PairingState::PairingRefused) => bail!("the owner refused this pairing request"),
            Ok(PairingState::PairingExpired) | Err(_) => {
                bail!("the pairing request expired unanswered; ask again")
            }
        }
    }
}

async fn approve(
    manager: &str,
    creds: &Credentials,
    node_id: &str,
    id: u64,
    approved: bool,
) -> Result<()> {
    let state_of = |pairings: &[Pairing]| pairings.iter().find(|p| p.request_id == id).cloned();
    match state_of(&list(manager, creds, node_id).await?) {
        None => {
            bail!("this node has no pairing request {id} (`lnswarmctl node pair ls` lists them)")
        }
        Some(p) if p.state != PairingState::PairingPending as i32 => {
            bail!("pairing request {id} is {} already", state_name(p.state))
        }
        Some(_) => {}
    }
    let addrs = retry::manager_addrs(manager);
    let addr = addrs.first().context("no manager address given")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut requests = scheduler(addr, creds)
        .await?
        .signer_requests_stream(ReceiverStream::new(rx))
        .await
        .context("SignerRequestsStream")?
        .into_inner();
    let decided = tokio::time::timeout(DECIDE_BOUND, async {
        while let Some(request) = requests.message().await? {
            if request.request_id != id {
                continue;
            }
            tx.send(SignerResponse {
                request_id: id,
                response: Some(signer_response::Response::ApprovePairing(
                    ApprovePairingResponse { approved },
                )),
            })
            .await
            .ok();
            // Decided once the request is no longer pending.
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(p) = state_of(&list(manager, creds, node_id).await?) {
                    if p.state != PairingState::PairingPending as i32 {
                        return Ok::<_, anyhow::Error>(p);
                    }
                }
            }
        }
        bail!("the cluster closed the signer stream")
    })
    .await
    .context("the pairing request was not decided in time")??;
    let r = decided.request.unwrap_or_default();
    println!(
        "pairing request {id} {}: device {:?} ({} access)",
        state_name(decided.state),
        r.device,
        access(r.read_only)
    );
    Ok(())
}
