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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    match Cli::parse().command {
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
    }
}
