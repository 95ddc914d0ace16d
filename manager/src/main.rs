//! `lnswarm-manager`: create a cluster (`init`) or run a manager from its data
//! directory (`run`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lnswarm_common::{api::Manager, credentials::Credentials, telemetry};
use lnswarm_manager::{
    init::{init, InitOptions},
    layout::{open_db, DataDir},
    server,
    store::{keys, Store},
};
use tokio::net::TcpListener;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "lnswarm-manager",
    version,
    about = "A manager of an lnswarm cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new cluster in an empty data directory and serve it.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:4242.
        #[arg(long)]
        listen: String,
        /// Address others dial, if not the listen address.
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Use this root CA certificate (PEM) instead of creating one; its O names
        /// the cluster. Requires --ca-key.
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// Private key (PEM) of --ca-cert.
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
    },
    /// Run a manager from its data directory.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// Override the listen address recorded at init.
        #[arg(long)]
        listen: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    match Cli::parse().command {
        Command::Init {
            data_dir,
            listen,
            advertise_addr,
            ca_cert,
            ca_key,
        } => {
            let external_ca = match (ca_cert, ca_key) {
                (Some(c), Some(k)) => Some((
                    std::fs::read_to_string(&c)
                        .with_context(|| format!("reading {}", c.display()))?,
                    std::fs::read_to_string(&k)
                        .with_context(|| format!("reading {}", k.display()))?,
                )),
                _ => None,
            };
            // Bind first so a busy port fails before anything is written.
            let listener = TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let done = init(InitOptions {
                data_dir: data_dir.clone(),
                listen,
                advertise: advertise_addr,
                external_ca,
            })
            .await?;
            println!("cluster id: {}", done.record.cluster_id);
            println!("worker token: {}", done.record.worker_token);
            println!("manager token: {}", done.record.manager_token);
            println!(
                "operator credentials: {}",
                DataDir::new(&data_dir).operator().display()
            );
            println!(
                "manager {} listening on {}",
                done.config.id,
                listener.local_addr()?
            );
            info!(manager = %done.config.id, cluster = %done.record.cluster_id, "cluster created");
            server::serve(
                listener,
                &done.credentials,
                done.store,
                done.manager,
                shutdown_signal(),
            )
            .await
        }
        Command::Run { data_dir, listen } => {
            let dir = DataDir::new(&data_dir);
            let mut config = dir.read_config()?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let credentials = Credentials::load(&dir.credentials())?;
            let store = Store::open_local(
                open_db(&dir)?,
                Some((config.id.clone(), config.advertise.clone())),
            )?;
            let manager = store
                .get::<Manager>(&keys::manager(&config.id))?
                .map(|(_, m)| m)
                .context("this manager is not in the store")?;
            let listener = TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("listening on {}", config.listen))?;
            info!(manager = %config.id, addr = %config.listen, "manager running");
            server::serve(listener, &credentials, store, manager, shutdown_signal()).await
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down");
}
