//! `lnswarmctl cluster`: info, settings, join tokens (and `ca`, in cluster_ca.rs).

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use lnswarm_common::api::{
    chain_source::Source, BitcoindRpc, ChainSource, ClusterSettingsUpdate, GetClusterInfoRequest,
    GetJoinTokenRequest, GetUnlockKeyRequest, JoinRole, UpdateClusterSettingsRequest,
};
use serde_json::json;

use crate::{
    connection::Connection,
    output::{cert_expiry, print_json, print_table, Format},
};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster's id, CA digest, settings and size.
    Info {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Change settings; options not given keep their value.
    Update(Box<UpdateArgs>),
    /// Print the autolock unlock key (only the key).
    UnlockKey {
        /// Make a new key first; managers stop accepting the old one once they have
        /// seen the change.
        #[arg(long)]
        rotate: bool,
    },
    /// The root CA: its digest, a rotation's progress (`--rotate` starts one).
    Ca(crate::cluster_ca::CaArgs),
    /// Print a join token (only the token, so scripts can capture it).
    JoinToken {
        #[arg(value_enum)]
        role: TokenRole,
        /// Replace the token first; the old one is refused from then on.
        #[arg(long)]
        rotate: bool,
    },
}

/// `cluster update`'s options (boxed: they are many).
#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Network hosted nodes run on.
    #[arg(long, value_enum)]
    pub network: Option<Network>,
    /// Chain source: bitcoind JSON-RPC as USER:PASSWORD@HOST:PORT.
    #[arg(long, env = "LNSWARM_BITCOIND_RPC", hide_env_values = true, value_parser = parse_bitcoind)]
    pub bitcoind_rpc: Option<BitcoindRpc>,
    /// Chain source: an Esplora server URL.
    #[arg(long, conflicts_with = "bitcoind_rpc")]
    pub esplora_url: Option<String>,
    /// Chain source: an Electrum server URL.
    #[arg(long, conflicts_with_all = ["bitcoind_rpc", "esplora_url"])]
    pub electrum_url: Option<String>,
    /// Heartbeat period agents are told to use, 100 to 600000 ms.
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub heartbeat_period_ms: Option<u64>,
    /// Missed periods before an agent is DOWN, 2 to 100 (period × grace is at
    /// most an hour).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub heartbeat_grace: Option<u32>,
    /// Whether Register requires an invite code.
    #[arg(long)]
    pub require_invite_code: Option<bool>,
    /// Autolock: a restarted manager serves nothing until it is given the unlock
    /// key, which turning this on prints once.
    #[arg(long)]
    pub autolock: Option<bool>,
    /// Let anyone register a node without an invite code or an app credential
    /// (off by default; for closed or development networks).
    #[arg(long)]
    pub open_registration: Option<bool>,
    /// Lifetime of the certificates managers, agents, hosted nodes and
    /// operators renew themselves (`90d`, `1h`, `45s`; 10 s to 5 years).
    /// Certificates move to it as they renew.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub cert_expiry: Option<std::time::Duration>,
    /// Lifetime of owners' device certificates (Register, Recover).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub device_cert_expiry: Option<std::time::Duration>,
    /// Let outgoing webhooks use plain http to a loopback address (development
    /// only; https otherwise).
    #[arg(long)]
    pub webhook_loopback_http: Option<bool>,
    /// Attempts per webhook event, 1 to 20 (default 5).
    #[arg(long)]
    pub webhook_attempts: Option<u32>,
    /// Wait before a webhook event's first retry, doubling after each (`60s`;
    /// 1 s to a day).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub webhook_retry: Option<std::time::Duration>,
    /// Timeout of one webhook attempt (`30s`; 1 s to 5 min).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub webhook_timeout: Option<std::time::Duration>,
    /// How long a device's pairing request waits for the owner (`5m`; 1 s to 1 h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub pairing_ttl: Option<std::time::Duration>,
    /// Stop a hosted node that has no channels, no pending payments and no owner
    /// calls for this long, until Schedule (`1h`; 5 s to 30 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_stop: Option<std::time::Duration>,
    /// The share of hosted nodes a rolling upgrade (`node upgrade --all`) restarts
    /// at once, percent (1-100; at least one node; default 10).
    #[arg(long)]
    pub upgrade_max_share: Option<u32>,
}

/// The networks a hosted node can run on.
#[derive(Clone, Copy, ValueEnum)]
pub enum Network {
    Bitcoin,
    Testnet,
    Testnet4,
    Signet,
    Regtest,
}

impl Network {
    fn as_str(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }
}

/// `USER:PASSWORD@HOST:PORT` of a bitcoind JSON-RPC endpoint.
fn parse_bitcoind(s: &str) -> Result<BitcoindRpc, String> {
    let (auth, hostport) = s
        .rsplit_once('@')
        .ok_or("expected USER:PASSWORD@HOST:PORT")?;
    let (user, password) = auth
        .split_once(':')
        .ok_or("expected USER:PASSWORD@HOST:PORT")?;
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or("expected USER:PASSWORD@HOST:PORT")?;
    Ok(BitcoindRpc {
        host: host.to_string(),
        port: port.parse().map_err(|_| "port must be a number")?,
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TokenRole {
    Worker,
    Manager,
}

pub async fn run(conn: &Connection, cmd: ClusterCommand) -> Result<()> {
    if let ClusterCommand::Ca(args) = cmd {
        return crate::cluster_ca::run(conn, args).await;
    }
    let mut control = conn.control().await?;
    match cmd {
        ClusterCommand::Info { format } => {
            let info = control
                .get_cluster_info(GetClusterInfoRequest {})
                .await?
                .into_inner();
            let settings = info.settings.unwrap_or_default();
            let creds = conn.load_credentials()?;
            let root_ca_expires = cert_expiry(&creds.ca_pem);
            let own_expires = cert_expiry(&creds.cert_pem);
            match format {
                Format::Json => print_json(&json!({
                    "cluster_id": info.cluster_id,
                    "root_ca_digest": info.root_ca_digest,
                    "managers": info.managers,
                    "agents": info.agents,
                    "hosted_nodes": info.hosted_nodes,
                    "created_unix_ms": info.created_unix_ms,
                    "settings": {
                        "network": settings.network,
                        "heartbeat_period_ms": settings.heartbeat_period_ms,
                        "heartbeat_grace_multiplier": settings.heartbeat_grace_multiplier,
                        "require_invite_code": settings.require_invite_code,
                        "cert_expiry_secs": settings.cert_expiry_secs,
                        "device_cert_expiry_secs": settings.device_cert_expiry_secs,
                        "webhook_loopback_http": settings.webhook_loopback_http,
                        "webhook_attempts": settings.webhook_attempts,
                        "webhook_first_retry_secs": settings.webhook_first_retry_secs,
                        "webhook_timeout_secs": settings.webhook_timeout_secs,
                        "pairing_ttl_secs": settings.pairing_ttl_secs,
                        "idle_stop_secs": settings.idle_stop_secs,
                        "upgrade_max_share_percent": settings.upgrade_max_share_percent,
                    },
                    "root_ca_expires": root_ca_expires,
                    "credential_expires": own_expires,
                })),
                Format::Table => print_table(
                    &["FIELD", "VALUE"],
                    &[
                        vec!["cluster id".into(), info.cluster_id],
                        vec!["root CA digest".into(), info.root_ca_digest],
                        vec!["managers".into(), info.managers.to_string()],
                        vec!["agents".into(), info.agents.to_string()],
                        vec!["hosted nodes".into(), info.hosted_nodes.to_string()],
                        vec!["network".into(), settings.network],
                        vec![
                            "heartbeat".into(),
                            format!(
                                "every {} ms, down after {} missed",
                                settings.heartbeat_period_ms, settings.heartbeat_grace_multiplier
                            ),
                        ],
                        vec![
                            "certificate lifetime".into(),
                            humantime::format_duration(std::time::Duration::from_secs(
                                settings.cert_expiry_secs,
                            ))
                            .to_string(),
                        ],
                        vec![
                            "device certificate lifetime".into(),
                            humantime::format_duration(std::time::Duration::from_secs(
                                settings.device_cert_expiry_secs,
                            ))
                            .to_string(),
                        ],
                        vec!["root CA expires".into(), root_ca_expires],
                        vec!["this credential expires".into(), own_expires],
                    ],
                ),
            }
        }
        ClusterCommand::Update(args) => {
            let UpdateArgs {
                network,
                bitcoind_rpc,
                esplora_url,
                electrum_url,
                heartbeat_period_ms,
                heartbeat_grace,
                require_invite_code,
                autolock,
                open_registration,
                cert_expiry,
                device_cert_expiry,
                webhook_loopback_http,
                webhook_attempts,
                webhook_retry,
                webhook_timeout,
                pairing_ttl,
                idle_stop,
                upgrade_max_share,
            } = *args;
            let source = match (bitcoind_rpc, esplora_url, electrum_url) {
                (Some(rpc), _, _) => Some(Source::BitcoindRpc(rpc)),
                (_, Some(url), _) => Some(Source::EsploraUrl(url)),
                (_, _, Some(url)) => Some(Source::ElectrumUrl(url)),
                _ => None,
            };
            let update = ClusterSettingsUpdate {
                heartbeat_period_ms,
                heartbeat_grace_multiplier: heartbeat_grace,
                network: network.map(|n| n.as_str().to_string()),
                chain_source: source.map(|s| ChainSource { source: Some(s) }),
                require_invite_code,
                autolock,
                open_registration,
                cert_expiry_secs: cert_expiry.map(|d| d.as_secs()),
                device_cert_expiry_secs: device_cert_expiry.map(|d| d.as_secs()),
                webhook_loopback_http,
                webhook_attempts,
                webhook_first_retry_secs: webhook_retry.map(|d| d.as_secs()),
                webhook_timeout_secs: webhook_timeout.map(|d| d.as_secs()),
                pairing_ttl_secs: pairing_ttl.map(|d| d.as_secs()),
                idle_stop_secs: idle_stop.map(|d| d.as_secs()),
                upgrade_max_share_percent: upgrade_max_share,
            };
            if update == ClusterSettingsUpdate::default() {
                anyhow::bail!("nothing to change: give at least one setting (see --help)");
            }
            let info = control
                .update_cluster_settings(UpdateClusterSettingsRequest {
                    update: Some(update),
                })
                .await?
                .into_inner();
            println!("updated");
            if !info.unlock_key.is_empty() {
                println!("autolock is on. The unlock key, shown only this once (a restarted manager needs it: `lnswarm-manager unlock`):");
                println!("{}", info.unlock_key);
            }
        }
        ClusterCommand::UnlockKey { rotate } => {
            let key = control
                .get_unlock_key(GetUnlockKeyRequest { rotate })
                .await?
                .into_inner()
                .unlock_key;
            println!("{key}");
        }
        ClusterCommand::Ca(_) => unreachable!("answered above"),
        ClusterCommand::JoinToken { role, rotate } => {
            let role = match role {
                TokenRole::Worker => JoinRole::Worker,
                TokenRole::Manager => JoinRole::Manager,
            };
            let token = control
                .get_join_token(GetJoinTokenRequest {
                    role: role as i32,
                    rotate,
                })
                .await?
                .into_inner()
                .token;
            println!("{token}");
        }
    }
    Ok(())
}
