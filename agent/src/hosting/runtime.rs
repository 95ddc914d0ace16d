//! [`HostedNodeRuntime`]: a hosted-node task → an `lnswarm-node` launch plan.

use std::{
    net::SocketAddr,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use lnswarm_common::{
    api::{chain_source::Source, task_spec::Runtime, NodeTlsSecret, Task},
    cert_files,
    ids::is_node_id_hex,
    tls,
};
use lnswarm_node::NodeArgs;
use prost::Message;

use super::{node_version::NodeBinary, ports, readiness::NodeApiHealth};
use crate::executor::{ExecutorError, LaunchPlan, Readiness, SecretBytes, Secrets, TaskRuntime};
use crate::lease::AgentLease;

/// What the runtime needs to know about its agent.
#[derive(Clone)]
pub struct HostingConfig {
    /// One directory per hosted node lives here.
    pub nodes_root: PathBuf,
    /// The lease the nodes run under (its file is in `nodes_root`).
    pub lease: Arc<AgentLease>,
    /// The managers, where nodes keep their state (kept current by the session).
    pub managers: Arc<Mutex<Vec<String>>>,
    /// The cluster root CA (PEM file), which nodes trust for their owners.
    pub ca_file: PathBuf,
    /// Host that owners reach this agent's nodes at.
    pub advertise_host: String,
    /// Ports nodes may use.
    pub port_range: (u16, u16),
    /// The `lnswarm-node` binary.
    pub node_binary: PathBuf,
    /// The agent's log format, which its nodes use too.
    pub log_format: lnswarm_common::telemetry::LogFormat,
}

pub struct HostedNodeRuntime {
    config: HostingConfig,
    ca_pem: String,
    binary: Arc<NodeBinary>,
}

impl HostedNodeRuntime {
    pub fn new(mut config: HostingConfig) -> std::io::Result<Self> {
        let ca_pem = std::fs::read_to_string(&config.ca_file)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.nodes_root)?;
        // Children run in their node's directory, so every path they get is absolute.
        config.nodes_root = std::fs::canonicalize(&config.nodes_root)?;
        config.ca_file = std::fs::canonicalize(&config.ca_file)?;
        config.node_binary = std::fs::canonicalize(&config.node_binary)?;
        let binary = Arc::new(NodeBinary::new(config.node_binary.clone()));
        Ok(HostedNodeRuntime {
            config,
            ca_pem,
            binary,
        })
    }

    /// The `lnswarm-node` binary this runtime starts, and its version.
    pub fn node_binary(&self) -> Arc<NodeBinary> {
        self.binary.clone()
    }
}

/// Writes the node's certificate from its task's secret, unless the one on disk
/// is a later one of the same node: the node renews its certificate in place, and a
/// restart of the same task must not go back to the one the task began with.
fn install_certificate(cert: &Path, key: &Path, secret: &NodeTlsSecret) -> std::io::Result<()> {
    let expiry = |pem: &str| lnswarm_common::pki::validity_of(pem).map(|(_, na)| na).ok();
    if let Ok((on_disk, _)) = cert_files::read_pair(cert, key) {
        let same_node = lnswarm_common::pki::subject_of(&on_disk)
            .ok()
            .and_then(|s| s.common_name)
            == lnswarm_common::pki::subject_of(&secret.cert_pem)
                .ok()
                .and_then(|s| s.common_name);
        if same_node && expiry(&on_disk) > expiry(&secret.cert_pem) {
            return Ok(());
        }
    }
    cert_files::write_pair(cert, key, &secret.cert_pem, &secret.key_pem)
}

/// Where a hosted node listens: loopback only when the agent advertises a loopback
/// address (a development cluster: nothing outside the host can reach it anyway),
/// every interface otherwise.
fn bind_ip(advertise_host: &str) -> std::net::IpAddr {
    match advertise_host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => ip,
        _ => std::net::IpAddr::from([0, 0, 0, 0]),
    }
}

fn invalid(msg: impl Into<String>) -> ExecutorError {
    ExecutorError::InvalidSpec(msg.into())
}

impl TaskRuntime for HostedNodeRuntime {
    fn plan(&self, task: &Task, secrets: &Secrets) -> Result<LaunchPlan, ExecutorError> {
        let Some(Runtime::HostedNode(spec)) = task.spec.as_ref().and_then(|s| s.runtime.as_ref())
        else {
            return Err(invalid("not a hosted-node task"));
        };
        if !is_node_id_hex(&spec.node_id) {
            return Err(invalid("node_id is not a hex node id"));
        }
        let seed = secrets
            .get(&spec.seed_secret_id)
            .ok_or_else(|| ExecutorError::MissingSecret(spec.seed_secret_id.clone()))?;
        let tls_secret = secrets
            .get(&spec.tls_secret_id)
            .ok_or_else(|| ExecutorError::MissingSecret(spec.tls_secret_id.clone()))?;
        let node_tls = NodeTlsSecret::decode(tls_secret.0.as_slice())
            .map_err(|_| invalid("the TLS secret is malformed"))?;

        let dir = self.config.nodes_root.join(&spec.node_id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let ports = ports::allocate(&self.config.nodes_root, &dir, self.config.port_range)?;
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        install_certificate(&cert, &key, &node_tls)?;

        let network = if spec.network.is_empty() {
            "regtest"
        } else {
            spec.network.as_str()
        };
        let bind = bind_ip(&self.config.advertise_host);
        let mut config = NodeArgs {
            network: Some(network.to_string()),
            listen: Some(SocketAddr::new(bind, ports.lightning).to_string()),
            api_listen: Some(SocketAddr::new(bind, ports.api)),
            storage_dir: Some(dir.join("ldk")),
            tls_cert: Some(cert),
            tls_key: Some(key),
            ca_cert: Some(self.config.ca_file.clone()),
            node_id: Some(spec.node_id.clone()),
            log_format: Some(self.config.log_format.to_string()),
            ..NodeArgs::default()
        };
        // Epoch 0 is a task from before replicated state: the node keeps its state
        // in its local SQLite, as it did then.
        if spec.lease_epoch > 0 {
            config.lease_epoch = Some(spec.lease_epoch);
            config.lease_file = Some(self.config.lease.file().to_path_buf());
            config.state_managers = Some(
                self.config
                    .managers
                    .lock()
                    .expect("managers lock")
                    .join(","),
            );
        }
        match spec.chain_source.as_ref().and_then(|c| c.source.as_ref()) {
            Some(Source::BitcoindRpc(rpc)) => {
                config.bitcoind_rpc_host = Some(rpc.host.clone());
                config.bitcoind_rpc_port = Some(
                    u16::try_from(rpc.port)
                        .map_err(|_| invalid("bitcoind RPC port out of range"))?,
                );
                config.bitcoind_rpc_user = Some(rpc.user.clone());
                config.bitcoind_rpc_password = Some(rpc.password.clone());
            }
            Some(Source::EsploraUrl(url)) => config.esplora_url = Some(url.clone()),
            Some(Source::ElectrumUrl(url)) => config.electrum_url = Some(url.clone()),
            None => {
                return Err(invalid(
                    "the cluster has no chain source; set one with `lnswarmctl cluster update`",
                ))
            }
        }
        // The config holds the chain source's password, so it is private like the key.
        let config_file = dir.join("node.json");
        cert_files::write_private(
            &config_file,
            &serde_json::to_vec_pretty(&config).expect("JSON serializes"),
        )?;

        // Read at each launch: the agent rewrites it when the cluster's roots
        // change (a root rotation).
        let ca_pem =
            std::fs::read_to_string(&self.config.ca_file).unwrap_or_else(|_| self.ca_pem.clone());
        let tls =
            tls::client_config(&ca_pem, None).map_err(|e| invalid(format!("cluster CA: {e}")))?;
        Ok(LaunchPlan {
            program: self.binary.path().to_path_buf(),
            args: vec!["--config".into(), config_file.display().to_string()],
            env: vec![],
            cwd: Some(dir),
            stdin: SecretBytes(seed.0.clone()),
            readiness: Readiness::Check(Arc::new(NodeApiHealth {
                addr: format!("127.0.0.1:{}", ports.api),
                tls,
                node_id: spec.node_id.clone(),
            })),
            endpoint: format!("https://{}:{}", self.config.advertise_host, ports.api),
            lightning_addr: format!("{}:{}", self.config.advertise_host, ports.lightning),
            // Read as the plan is made: the process started from it runs this one.
            version: self.binary.version(),
            lease: Some(self.config.lease.clone()),
            log_name: format!("node-{}", spec.node_id),
        })
    }
}
