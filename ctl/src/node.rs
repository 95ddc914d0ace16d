//! `lnswarmctl node`: what node owners do (register, recover) and what operators
//! see of hosted nodes (ls, inspect).

use std::{io::Read, path::PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lnswarm_common::{
    api::{
        scheduler_client::SchedulerClient, ChallengeRequest, ChallengeScope, HostedNode,
        HostedNodeState, InspectHostedNodeRequest, ListHostedNodesRequest, MoveHostedNodeRequest,
        RecoveryRequest, RegistrationRequest, UpgradeHostedNodesRequest,
    },
    credentials::Credentials,
    join::{fetch_pinned_ca, JoinError},
    node_keys,
    pki::{new_key_and_csr, Role},
    seal, tls,
};
use serde_json::json;

use crate::{
    connection::Connection,
    output::{print_json, print_table, Format},
    profile::{save, ProfileArgs, ProfileInfo},
    retry::manager_addrs,
};

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Make a new node: a BIP39 seed made here, registered with the cluster. The
    /// mnemonic is shown once; the device credential is stored in the profile.
    Register {
        #[command(flatten)]
        trust: Trust,
        /// This device's name (bound into its certificate).
        #[arg(long, default_value = "cli")]
        device: String,
        /// The network the node runs on; by default the cluster's.
        #[arg(long)]
        network: Option<String>,
        #[arg(long, default_value = "")]
        invite_code: String,
        /// An app credential (from `lnswarmctl app create`): registers without an
        /// invite code.
        #[arg(long, env = "LNSWARM_APP_CREDENTIALS")]
        app: Option<PathBuf>,
        /// Bring an existing node: the file holding its 24 words (the node's state
        /// comes with it at its first start, from the old local store under the
        /// agent's node directory). Without it a new seed is made here.
        #[arg(long)]
        mnemonic_file: Option<PathBuf>,
        /// Replace the profile if it already holds a node's credential.
        #[arg(long)]
        force: bool,
    },
    /// Get a new device credential for a registered node from its mnemonic (read
    /// from --mnemonic-file or stdin). Existing credentials stay valid.
    Recover {
        #[command(flatten)]
        trust: Trust,
        #[arg(long, default_value = "cli")]
        device: String,
        /// File holding the 24 words; stdin if absent.
        #[arg(long)]
        mnemonic_file: Option<PathBuf>,
        /// Replace the profile if it already holds a node's credential.
        #[arg(long)]
        force: bool,
    },
    /// Pair a new device with a node (`request`, on the new device), or answer the
    /// requests (`ls`, `approve`, on a paired one).
    Pair {
        #[command(subcommand)]
        cmd: crate::node_pair::PairCommand,
    },
    /// Owner commands on the profile's node (schedule, info, getinfo, pay, ...).
    #[command(flatten)]
    Owner(crate::node_api::OwnerCommand),
    /// Operators: hosted nodes of the cluster.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Operators: one hosted node in detail.
    Inspect {
        node_id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Operators: move a running node to another agent. It stops cleanly where it
    /// is, then starts on --to (or where placement picks); its state and channels
    /// go with it.
    Move {
        node_id: String,
        /// The agent to move it to (default: any other READY agent).
        #[arg(long)]
        to: Option<String>,
    },
    /// Operators: a rolling upgrade. Every node running an older lnswarm-node than
    /// its agent ships restarts on the new one (cleanly, with its channels), never
    /// more than --max-share of the nodes at once; follow it with `node ls`.
    Upgrade {
        /// Every node that is behind (the only mode there is).
        #[arg(long, required = true)]
        all: bool,
        /// At most this share restarts at once, percent (1-100; at least one
        /// node). Default: the cluster's `--upgrade-max-share`.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        max_share: Option<u32>,
    },
}

/// How an owner, who has no credential yet, trusts the cluster.
#[derive(clap::Args, Clone)]
pub struct Trust {
    /// The cluster's root CA (PEM).
    #[arg(long, conflicts_with = "ca_digest")]
    ca: Option<PathBuf>,
    /// The SHA-256 digest of the cluster's root CA, as `lnswarmctl cluster info`
    /// shows it; the CA is fetched and checked against it.
    #[arg(long, env = "LNSWARM_CA_DIGEST")]
    ca_digest: Option<String>,
}

impl Trust {
    pub(crate) async fn ca_pem(&self, manager: &str) -> Result<String> {
        match (&self.ca, &self.ca_digest) {
            (Some(path), _) => {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            }
            (None, Some(digest)) => {
                // A manager that cannot be reached was sent nothing: try the next.
                let mut last = None;
                for addr in manager_addrs(manager) {
                    match fetch_pinned_ca(&addr, digest).await {
                        Err(e @ JoinError::FetchCa { .. }) => last = Some(e),
                        other => return Ok(other?),
                    }
                }
                Err(last.map_or_else(|| anyhow::anyhow!("no manager address given"), Into::into))
            }
            (None, None) => bail!(
                "pass --ca FILE or --ca-digest HEX so the seed is sealed to the right cluster"
            ),
        }
    }
}

pub async fn run(conn: &Connection, profile: &ProfileArgs, cmd: NodeCommand) -> Result<()> {
    match cmd {
        NodeCommand::Owner(cmd) => {
            return crate::node_api::run(profile, conn.manager.clone(), cmd).await
        }
        NodeCommand::Pair { cmd } => return crate::node_pair::run(conn, profile, cmd).await,
        NodeCommand::Register {
            trust,
            device,
            network,
            invite_code,
            app,
            mnemonic_file,
            force,
        } => {
            refuse_to_replace(&profile.dir()?, force)?;
            let manager = conn.manager_addr()?;
            let words = mnemonic_file
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))
                })
                .transpose()?;
            let ca_pem = trust.ca_pem(&manager).await?;
            let dir = profile.dir()?;
            let app = app
                .map(|dir| {
                    Credentials::load(&dir)
                        .with_context(|| format!("loading the app credential in {}", dir.display()))
                })
                .transpose()?;
            let (node_id, mnemonic) = register(
                &manager,
                &ca_pem,
                &Registration {
                    device: &device,
                    network: network.as_deref(),
                    invite_code: &invite_code,
                    app: app.as_ref(),
                    words: words.as_deref(),
                },
                &dir,
            )
            .await?;
            println!("node id: {node_id}");
            println!("profile: {}", dir.display());
            if words.is_none() {
                println!("mnemonic (write it down; it is shown only this once and is the only way to recover the node):");
                println!("{mnemonic}");
            }
        }
        NodeCommand::Recover {
            trust,
            device,
            mnemonic_file,
            force,
        } => {
            refuse_to_replace(&profile.dir()?, force)?;
            let manager = conn.manager_addr()?;
            let ca_pem = trust.ca_pem(&manager).await?;
            let words = match mnemonic_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                }
            };
            let seed = node_keys::seed_from_mnemonic(&words)?;
            let node_id = node_keys::node_id(&seed)?;
            let mut scheduler = anonymous_scheduler(&manager, &ca_pem, None).await?;
            let challenge = scheduler
                .get_challenge(ChallengeRequest {
                    scope: ChallengeScope::Recover as i32,
                    node_id: hex::decode(&node_id)?,
                })
                .await?
                .into_inner();
            let key = new_key_and_csr(&device, Some(Role::User))?;
            let response = scheduler
                .recover(RecoveryRequest {
                    node_id: hex::decode(&node_id)?,
                    signature: node_keys::sign_message(&seed, &challenge.challenge)?,
                    challenge: challenge.challenge,
                    csr: key.csr_pem.into_bytes(),
                    device: device.clone(),
                })
                .await?
                .into_inner();
            let dir = profile.dir()?;
            save(
                &dir,
                &ProfileInfo {
                    node_id: node_id.clone(),
                    device,
                    manager,
                    network: String::new(),
                },
                &Credentials {
                    cert_pem: String::from_utf8(response.device_cert)?,
                    key_pem: key.key_pem,
                    ca_pem,
                },
            )?;
            println!("node id: {node_id}");
            println!("profile: {}", dir.display());
        }
        NodeCommand::Ls { format } => {
            let mut control = conn.control().await?;
            let nodes = control
                .list_hosted_nodes(ListHostedNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            match format {
                Format::Json => print_json(&json!(nodes.iter().map(node_json).collect::<Vec<_>>())),
                Format::Table => print_table(
                    &["NODE ID", "STATE", "VERSION", "AGENT", "ADDRESS", "SINCE"],
                    &nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.node_id.clone(),
                                state_name(n.state).into(),
                                n.running_version.clone(),
                                n.agent_id.clone(),
                                n.grpc_uri.clone(),
                                crate::output::ms_time(n.since_unix_ms),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        NodeCommand::Move { node_id, to } => {
            let mut control = conn.control().await?;
            let node = control
                .move_hosted_node(MoveHostedNodeRequest {
                    node_id,
                    to_agent: to.unwrap_or_default(),
                })
                .await?
                .into_inner();
            println!(
                "moving node {} off agent {} (follow it with `lnswarmctl node inspect`)",
                node.node_id, node.agent_id
            );
        }
        NodeCommand::Upgrade { all: _, max_share } => {
            let mut control = conn.control().await?;
            let r = control
                .upgrade_hosted_nodes(UpgradeHostedNodesRequest {
                    max_share_percent: max_share,
                })
                .await?
                .into_inner();
            println!(
                "rolling upgrade started: {} node(s) behind their agent's lnswarm-node, at most {} restarting at once (follow it with `lnswarmctl node ls`)",
                r.behind, r.at_once
            );
        }
        NodeCommand::Inspect { node_id, format } => {
            let mut control = conn.control().await?;
            let node = control
                .inspect_hosted_node(InspectHostedNodeRequest { node_id })
                .await?
                .into_inner();
            match format {
                Format::Json => print_json(&node_json(&node)),
                Format::Table => print_table(
                    &["FIELD", "VALUE"],
                    &[
                        vec!["node id".into(), node.node_id.clone()],
                        vec!["owner devices".into(), node.devices.join(", ")],
                        vec!["network".into(), node.network.clone()],
                        vec!["state".into(), state_name(node.state).into()],
                        vec!["version".into(), node.running_version.clone()],
                        vec!["message".into(), node.message.clone()],
                        vec!["agent".into(), node.agent_id.clone()],
                        vec!["task".into(), node.task_id.clone()],
                        vec!["address".into(), node.grpc_uri.clone()],
                        vec!["since".into(), crate::output::ms_time(node.since_unix_ms)],
                    ],
                ),
            }
        }
    }
    Ok(())
}

/// What a registration asks for, beside where to send it.
#[derive(Clone, Copy)]
pub struct Registration<'a> {
    pub device: &'a str,
    /// None: the cluster's network.
    pub network: Option<&'a str>,
    pub invite_code: &'a str,
    pub app: Option<&'a Credentials>,
    /// An existing node's mnemonic; a new seed is made when absent.
    pub words: Option<&'a str>,
}

/// A profile already holding a node's credential is replaced only with `--force`:
/// run twice, `register` would otherwise leave the first node reachable by its
/// mnemonic alone (and its funds with it).
pub(crate) fn refuse_to_replace(dir: &std::path::Path, force: bool) -> Result<()> {
    if force || !dir.join("profile.json").exists() {
        return Ok(());
    }
    let held: Option<ProfileInfo> =
        lnswarm_common::json_file::read(&dir.join("profile.json"), "").ok();
    let what = held.map_or_else(
        || "a node's credential".to_string(),
        |p| {
            format!(
                "the credential of node {} (device {:?})",
                p.node_id, p.device
            )
        },
    );
    anyhow::bail!(
        "the profile {} already holds {what}; replacing it would leave that node reachable only \
         through its mnemonic (`lnswarmctl node recover`). Use another --profile (or \
         --profile-dir), or pass --force to replace it",
        dir.display()
    )
}

/// Makes a seed here (or takes the one `words` give), registers its node, and saves
/// the device credential in `dir`. Returns the node id and the mnemonic (for the
/// caller to show once).
pub async fn register(
    manager: &str,
    ca_pem: &str,
    r: &Registration<'_>,
    dir: &std::path::Path,
) -> Result<(String, String)> {
    let Registration {
        device,
        network,
        invite_code,
        app,
        words,
    } = *r;
    let (mnemonic, seed) = match words {
        Some(w) => (w.trim().to_string(), node_keys::seed_from_mnemonic(w)?),
        None => node_keys::new_mnemonic(),
    };
    let node_id = node_keys::node_id(&seed)?;
    let mut scheduler = anonymous_scheduler(manager, ca_pem, app).await?;
    let challenge = scheduler
        .get_challenge(ChallengeRequest {
            scope: ChallengeScope::Register as i32,
            node_id: hex::decode(&node_id)?,
        })
        .await?
        .into_inner();
    let network = match network {
        Some(n) => n.to_string(),
        None if !challenge.network.is_empty() => challenge.network.clone(),
        None => "regtest".to_string(),
    };
    let key = new_key_and_csr(device, Some(Role::User))?;
    let response = scheduler
        .register(RegistrationRequest {
            node_id: hex::decode(&node_id)?,
            network: network.clone(),
            signature: node_keys::sign_message(&seed, &challenge.challenge)?,
            challenge: challenge.challenge,
            csr: key.csr_pem.into_bytes(),
            device: device.to_string(),
            sealed_seed: seal::seal(&challenge.seal_public_key, &seed)?,
            invite_code: invite_code.to_string(),
        })
        .await?
        .into_inner();
    save(
        dir,
        &ProfileInfo {
            node_id: node_id.clone(),
            device: device.to_string(),
            manager: manager.to_string(),
            network: network.clone(),
        },
        &Credentials {
            cert_pem: String::from_utf8(response.device_cert)?,
            key_pem: key.key_pem,
            ca_pem: ca_pem.to_string(),
        },
    )?;
    Ok((node_id, mnemonic))
}

/// The Scheduler for a caller with no owner credential yet: anonymous, or as an app,
/// on the first manager of the `--manager` list that takes the connection. Trying
/// the next one is safe because nothing was sent; the calls themselves are not
/// retried, since a repeated Register could meet its own consumed challenge.
pub(crate) async fn anonymous_scheduler(
    manager: &str,
    ca_pem: &str,
    app: Option<&Credentials>,
) -> Result<SchedulerClient<tonic::transport::Channel>> {
    let identity = app.map(|a| (a.cert_pem.as_str(), a.key_pem.as_str()));
    let config = tls::client_config(ca_pem, identity)?;
    let mut last = None;
    for addr in manager_addrs(manager) {
        match tls::connect(&addr, &config, Role::Manager).await {
            Ok(channel) => return Ok(SchedulerClient::new(channel)),
            Err(e) => {
                last = Some(anyhow::Error::from(e).context(format!("connecting to manager {addr}")))
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no manager address given")))
}

fn state_name(state: i32) -> &'static str {
    match HostedNodeState::try_from(state) {
        Ok(HostedNodeState::Registered) => "registered",
        Ok(HostedNodeState::Scheduled) => "scheduled",
        Ok(HostedNodeState::Running) => "running",
        Ok(HostedNodeState::Stopped) => "stopped",
        Ok(HostedNodeState::Unavailable) => "unavailable",
        Ok(HostedNodeState::Exported) => "exported",
        Ok(HostedNodeState::Exporting) => "exporting",
        Err(_) => "unknown",
    }
}

fn node_json(n: &HostedNode) -> serde_json::Value {
    json!({
        "node_id": n.node_id,
        "owner_devices": n.devices,
        "network": n.network,
        "state": state_name(n.state),
        "version": n.running_version,
        "upgrading": !n.upgrade_task.is_empty(),
        "message": n.message,
        "agent_id": n.agent_id,
        "task_id": n.task_id,
        "grpc_uri": n.grpc_uri,
        "created_unix_ms": n.created_unix_ms,
        "since_unix_ms": n.since_unix_ms,
        "since": crate::output::ms_time(n.since_unix_ms),
    })
}
