//! What `lnswarm-node` is told at start: flags, or a JSON config file with the same
//! names (flags win). The seed is never part of this; it comes only from stdin
//! ([`crate::seed`]).

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use ldk_node::bitcoin::{secp256k1::PublicKey, Network};
use serde::{Deserialize, Serialize};

/// Flags of `lnswarm-node`. Each may also be given in the `--config` file, a JSON
/// object whose keys are the flag names (`"bitcoind-rpc-host": "127.0.0.1"`).
#[derive(clap::Parser, Deserialize, Serialize, Default, Debug, Clone)]
#[command(
    name = "lnswarm-node",
    version,
    about = "One hosted Lightning node (ldk-node) and its Node API over mTLS.",
    long_about = "One hosted Lightning node (ldk-node) and its Node API over mTLS.\n\n\
        The node's 64-byte seed is read from stdin (raw bytes; e.g. `xxd -r -p seed.hex | \
        lnswarm-node ...`), never from flags, environment or files. The node refuses to start \
        if the seed does not give --node-id.\n\n\
        Chain source: bitcoind RPC (--bitcoind-rpc-*) in production, or --esplora-url, or \
        --electrum-url. lnswarm-regtest serves the bitcoind RPC subset on machines without \
        bitcoind."
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeArgs {
    /// A JSON file holding any of these options (flags given on the command line win).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// bitcoin, testnet, testnet4, signet or regtest.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// bitcoind RPC host (the production chain source).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitcoind_rpc_host: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitcoind_rpc_port: Option<u16>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitcoind_rpc_user: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitcoind_rpc_password: Option<String>,
    /// Esplora server URL (alternative chain source).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub esplora_url: Option<String>,
    /// Electrum server URL, e.g. tcp://host:50001 (alternative chain source).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub electrum_url: Option<String>,
    /// Seconds between wallet syncs for Esplora and Electrum (at least 10; bitcoind RPC
    /// polls every 2 seconds regardless).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval_secs: Option<u64>,
    /// Lightning peer-to-peer listen address, host:port.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Node API (gRPC over mTLS) listen address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_listen: Option<SocketAddr>,
    /// Where ldk-node keeps its state.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_dir: Option<PathBuf>,
    /// The node's server certificate (OU lightning-node, CN = node id), PEM.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key, PEM.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The cluster root CA, PEM.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The node id (hex public key) the seed must give.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Alias announced to the network (needed only for announced channels).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Keep the node's state in the managers' replicated store, at these addresses
    /// (HOST:PORT,...), under --lease-epoch. Without it the state is in local SQLite
    /// under --storage-dir.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_managers: Option<String>,
    /// The lease epoch this process runs under (from its task).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<u64>,
    /// The agent's lease file: the node stops itself once its deadline passes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_file: Option<PathBuf>,
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, env = "LNSWARM_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// Where the node keeps its state.
#[derive(Clone, Debug)]
pub enum StateConfig {
    /// ldk-node's SQLite under the storage dir (a node from before replicated state,
    /// and the benchmarks' baseline).
    Local,
    /// The managers' replicated store, fenced by the lease epoch; the lease file
    /// says how long the agent vouches for this process.
    Replicated {
        managers: Vec<String>,
        epoch: u64,
        lease_file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("missing --{0}")]
    Missing(&'static str),
    #[error("invalid --{0}: {1}")]
    Invalid(&'static str, String),
    #[error("give exactly one chain source: bitcoind RPC (--bitcoind-rpc-host ...), --esplora-url or --electrum-url")]
    ChainSource,
}

/// The options a config file at `path` holds (`text` is its content).
fn parse_file(path: &Path, text: &str) -> Result<NodeArgs, ConfigError> {
    serde_json::from_str::<NodeArgs>(text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Where the node learns about the chain.
#[derive(Clone)]
pub enum ChainSource {
    BitcoindRpc {
        host: String,
        port: u16,
        user: String,
        password: String,
    },
    Esplora {
        url: String,
    },
    Electrum {
        url: String,
    },
}

impl fmt::Debug for ChainSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainSource::BitcoindRpc {
                host, port, user, ..
            } => {
                write!(f, "bitcoind-rpc {user}@{host}:{port}")
            }
            ChainSource::Esplora { url } => write!(f, "esplora {url}"),
            ChainSource::Electrum { url } => write!(f, "electrum {url}"),
        }
    }
}

/// A complete, checked configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub log_format: lnswarm_common::telemetry::LogFormat,
    pub network: Network,
    pub chain: ChainSource,
    pub sync_interval_secs: u64,
    pub listen: String,
    pub api_listen: SocketAddr,
    pub storage_dir: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub ca_cert: PathBuf,
    pub node_id: PublicKey,
    pub alias: Option<String>,
    pub state: StateConfig,
}

impl NodeConfig {
    /// Merges the flags with the config file they name, and checks the result.
    pub fn from_args(cli: NodeArgs) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                parse_file(path, &text)?
            }
            None => NodeArgs::default(),
        };
        Self::merge(cli, file)
    }

    /// The flags `cli`, with what they leave out taken from `file`, checked.
    fn merge(cli: NodeArgs, file: NodeArgs) -> Result<Self, ConfigError> {
        macro_rules! pick {
            ($f:ident) => {
                cli.$f.or(file.$f)
            };
        }
        macro_rules! need {
            ($f:ident, $name:literal) => {
                pick!($f).ok_or(ConfigError::Missing($name))?
            };
        }
        let network_s = need!(network, "network");
        let network = Network::from_str(&network_s)
            .or_else(|_| Network::from_core_arg(&network_s))
            .map_err(|_| ConfigError::Invalid("network", network_s.clone()))?;

        let host = pick!(bitcoind_rpc_host);
        let esplora = pick!(esplora_url);
        let electrum = pick!(electrum_url);
        let chain = match (host, esplora, electrum) {
            (Some(host), None, None) => ChainSource::BitcoindRpc {
                host,
                port: need!(bitcoind_rpc_port, "bitcoind-rpc-port"),
                user: need!(bitcoind_rpc_user, "bitcoind-rpc-user"),
                password: need!(bitcoind_rpc_password, "bitcoind-rpc-password"),
            },
            (None, Some(url), None) => ChainSource::Esplora { url },
            (None, None, Some(url)) => ChainSource::Electrum { url },
            _ => return Err(ConfigError::ChainSource),
        };
        let node_id_s = need!(node_id, "node-id");
        let node_id = PublicKey::from_str(&node_id_s)
            .map_err(|_| ConfigError::Invalid("node-id", "not a hex public key".into()))?;
        let state = match (pick!(state_managers), pick!(lease_epoch), pick!(lease_file)) {
            (None, None, None) => StateConfig::Local,
            (Some(managers), Some(epoch), Some(lease_file)) if epoch > 0 => {
                let managers: Vec<String> = managers
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                if managers.is_empty() {
                    return Err(ConfigError::Invalid("state-managers", "no address".into()));
                }
                StateConfig::Replicated {
                    managers,
                    epoch,
                    lease_file,
                }
            }
            _ => {
                return Err(ConfigError::Invalid(
                    "state-managers",
                    "--state-managers, --lease-epoch (above 0) and --lease-file go together".into(),
                ))
            }
        };
        let log_format = match pick!(log_format) {
            Some(f) => f
                .parse()
                .map_err(|e| ConfigError::Invalid("log-format", e))?,
            None => Default::default(),
        };
        Ok(NodeConfig {
            log_format,
            network,
            state,
            chain,
            sync_interval_secs: pick!(sync_interval_secs).unwrap_or(10).max(10),
            listen: need!(listen, "listen"),
            api_listen: need!(api_listen, "api-listen"),
            storage_dir: need!(storage_dir, "storage-dir"),
            tls_cert: need!(tls_cert, "tls-cert"),
            tls_key: need!(tls_key, "tls-key"),
            ca_cert: need!(ca_cert, "ca-cert"),
            node_id,
            alias: pick!(alias),
        })
    }
}

#[cfg(test)]
#[path = "config_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const NODE_ID: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    #[test]
    fn config_file_fills_in_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("lnswarm-node-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.json");
        std::fs::write(
            &path,
            serde_json::json!({
                "network": "regtest",
                "bitcoind-rpc-host": "127.0.0.1",
                "bitcoind-rpc-port": 18443,
                "bitcoind-rpc-user": "u",
                "bitcoind-rpc-password": "secret-password",
                "listen": "127.0.0.1:9735",
                "api-listen": "127.0.0.1:10009",
                "storage-dir": "/tmp/x",
                "tls-cert": "c", "tls-key": "k", "ca-cert": "ca",
                "node-id": NODE_ID,
            })
            .to_string(),
        )
        .unwrap();
        let args = NodeArgs::parse_from([
            "lnswarm-node",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9999",
        ]);
        let c = NodeConfig::from_args(args).unwrap();
        assert_eq!(c.network, Network::Regtest);
        assert_eq!(c.listen, "127.0.0.1:9999");
        assert_eq!(c.api_listen.port(), 10009);
        assert!(
            !format!("{c:?}").contains("secret-password"),
            "password in Debug"
        );

        // Two chain sources is one too many; a bad network is named.
        let args = NodeArgs::parse_from([
            "lnswarm-node",
            "--config",
            path.to_str().unwrap(),
            "--esplora-url",
            "http://x",
        ]);
        assert!(matches!(
            NodeConfig::from_args(args),
            Err(ConfigError::ChainSource)
        ));
        let args = NodeArgs::parse_from([
            "lnswarm-node",
            "--config",
            path.to_str().unwrap(),
            "--network",
            "moon",
        ]);
        assert!(matches!(
            NodeConfig::from_args(args),
            Err(ConfigError::Invalid("network", _))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
