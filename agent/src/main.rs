//! `lnswarm-agent`: join a cluster with a worker token, then run from the data
//! directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lnswarm_agent::layout::{AgentConfig, DataDir};
use lnswarm_common::{join::join, pki::Role, telemetry};

#[derive(Parser)]
#[command(
    name = "lnswarm-agent",
    version,
    about = "The lnswarm agent of a worker host"
)]
struct Cli {
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, global = true, env = "LNSWARM_LOG_FORMAT", default_value_t)]
    log_format: lnswarm_common::telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a cluster: get this host's certificate with a worker join token.
    Join {
        #[arg(long)]
        data_dir: PathBuf,
        /// Worker join token (`lnswarmctl cluster join-token worker`).
        #[arg(long, env = "LNSWARM_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// A manager's address (host:port).
        #[arg(long)]
        manager: String,
        /// The address owners reach this host's hosted nodes at.
        #[arg(long, default_value = "127.0.0.1")]
        advertise_addr: String,
    },
    /// Run the agent: hold a session with the managers and run the tasks assigned.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// How many tasks this host runs at once (reported to the managers).
        #[arg(long, default_value_t = 8)]
        task_slots: u32,
        /// Ports handed to hosted nodes, FIRST-LAST.
        #[arg(long, default_value = "20000-20999")]
        port_range: String,
        /// Time between SIGTERM and SIGKILL when stopping a task, milliseconds.
        #[arg(long, default_value_t = 10_000)]
        stop_grace_ms: u64,
        /// First delay before restarting a crashed task, milliseconds (doubles up to
        /// 30 s).
        #[arg(long, default_value_t = 500)]
        restart_backoff_ms: u64,
        /// Longest delay between reconnection attempts, milliseconds.
        #[arg(long, default_value_t = 5_000)]
        reconnect_max_ms: u64,
        /// Serve plain-HTTP `GET /healthz` (200 while the managers vouch for this
        /// agent, 503 otherwise) and `GET /metrics` (Prometheus) here, e.g.
        /// 127.0.0.1:4280.
        #[arg(long, env = "LNSWARM_AGENT_STATUS_LISTEN")]
        status_listen: Option<std::net::SocketAddr>,
        /// The `lnswarm-node` binary hosted nodes run (default: the one next to
        /// lnswarm-agent). Replacing the file ships a new version: the agent
        /// reports it, and MaybeUpgrade or `node upgrade --all` restart nodes on it.
        #[arg(long, env = "LNSWARM_NODE_BINARY")]
        node_binary: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lnswarm_common::private_files::private_umask();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Join {
            data_dir,
            token,
            manager,
            advertise_addr,
        } => {
            let dir = DataDir::new(&data_dir);
            if dir.config_file().exists() {
                anyhow::bail!("{} already holds an agent", data_dir.display());
            }
            let joined = join(&manager, &token, Role::Worker, &advertise_addr)
                .await
                .context("joining the cluster")?;
            joined.credentials.save(&dir.credentials())?;
            dir.write_config(&AgentConfig {
                id: joined.id.clone(),
                cluster_id: joined.cluster_id.clone(),
                managers: vec![manager],
                advertise_addr,
            })?;
            println!(
                "joined cluster {} as agent {}",
                joined.cluster_id, joined.id
            );
            Ok(())
        }
        Command::Run {
            data_dir,
            task_slots,
            port_range,
            stop_grace_ms,
            restart_backoff_ms,
            reconnect_max_ms,
            status_listen,
            node_binary,
        } => {
            lnswarm_agent::run::run(lnswarm_agent::run::RunOptions {
                data_dir,
                task_slots,
                port_range,
                stop_grace: std::time::Duration::from_millis(stop_grace_ms),
                restart_backoff: std::time::Duration::from_millis(restart_backoff_ms),
                reconnect_max: std::time::Duration::from_millis(reconnect_max_ms),
                status_listen,
                node_binary,
                log_format: cli.log_format,
            })
            .await
        }
    }
}
