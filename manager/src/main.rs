//! `lnswarm-manager`: create a cluster (`init`), join one (`join`), run a manager
//! from its data directory (`run`), or unlock an autolocked one (`unlock`).

use std::{io::Read, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use lnswarm_common::{authz::limits::LimitConfig, credentials::Credentials, telemetry};
use lnswarm_manager::{
    init::{init, InitOptions},
    join::{join, JoinOptions},
    layout::DataDir,
    locked, run, server,
    store::raft::RaftConfig,
};
use tracing::info;

/// The manager allocates per request and per raft entry; mimalloc spends far less
/// CPU on that than glibc's malloc (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lnswarm-manager",
    version,
    about = "A manager of an lnswarm cluster"
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
    /// Create a new cluster in an empty data directory, print its join tokens and
    /// exit (then `lnswarm-manager run` serves it, e.g. under systemd); with
    /// --serve, go on serving it in this process.
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
        /// Lifetime of the certificates managers, agents, hosted nodes and
        /// operators renew themselves (`90d`, `1h`, `45s`; at least 10 s).
        /// Later: `lnswarmctl cluster update --cert-expiry`.
        #[arg(long, value_parser = humantime::parse_duration)]
        cert_expiry: Option<std::time::Duration>,
        /// Serve the new cluster in this process instead of exiting.
        #[arg(long = "serve")]
        keep_serving: bool,
        #[command(flatten)]
        raft: RaftArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Join an existing cluster as a manager (a voter of the quorum) and serve.
    Join {
        #[arg(long)]
        data_dir: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:4243.
        #[arg(long)]
        listen: String,
        /// Address others dial, if not the listen address.
        #[arg(long)]
        advertise_addr: Option<String>,
        /// The cluster's manager join token.
        #[arg(long, env = "LNSWARM_MANAGER_TOKEN", hide_env_values = true)]
        token: String,
        /// Address of any manager of the cluster.
        #[arg(long)]
        manager: String,
        #[command(flatten)]
        raft: RaftArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run a manager from its data directory.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// Override the listen address recorded at init.
        #[arg(long)]
        listen: Option<String>,
        /// Recovery after losing quorum: make this manager the only member of a new
        /// one-member cluster that keeps every committed change.
        #[arg(long)]
        force_new_cluster: bool,
        #[command(flatten)]
        raft: RaftArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Give an autolocked manager (on this host) its unlock key, read from stdin or
    /// --key-file.
    Unlock {
        #[arg(long)]
        data_dir: PathBuf,
        /// File holding the unlock key (LNSKEY-1-...); stdin if absent.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

/// Tuning of the replicated store.
#[derive(clap::Args, Clone, Debug)]
struct RaftArgs {
    /// Length of one raft tick, in milliseconds.
    #[arg(long, default_value_t = 100)]
    raft_tick_ms: u64,
    /// Ticks without hearing from a leader before a follower campaigns.
    #[arg(long, default_value_t = 10)]
    election_ticks: usize,
    /// Ticks between leader heartbeats.
    #[arg(long, default_value_t = 2)]
    heartbeat_ticks: usize,
    /// Compact the raft log every this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_interval: u64,
    /// Entries kept behind the compaction point for slow followers.
    #[arg(long, default_value_t = 1_000)]
    log_tail: u64,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Threads serving gRPC, each with its own share of the connections.
    #[arg(long, env = "LNSWARM_GRPC_THREADS", default_value_t = server::DEFAULT_THREADS)]
    grpc_threads: usize,
    /// Calls per second one address may make without a certificate (GetChallenge,
    /// Register, Recover, Unlock), and the burst it may spend at once.
    #[arg(long, default_value_t = LimitConfig::default().per_addr_per_sec)]
    anonymous_rate: u32,
    #[arg(long, default_value_t = LimitConfig::default().per_addr_burst)]
    anonymous_burst: u32,
    /// The same, for all addresses together.
    #[arg(long, default_value_t = LimitConfig::default().global_per_sec)]
    anonymous_global_rate: u32,
    #[arg(long, default_value_t = LimitConfig::default().global_burst)]
    anonymous_global_burst: u32,
    /// Connections one source address may hold open (0: no limit); past it new ones
    /// are closed at once. Raise it for tests that run thousands of agents from one
    /// address.
    #[arg(long, env = "LNSWARM_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = lnswarm_common::grpc_server::MAX_CONNECTIONS_PER_SOURCE)]
    max_connections_per_source: usize,
    /// Serve plain-HTTP `GET /healthz` (200 while this manager knows a leader) and
    /// `GET /metrics` (Prometheus) here, e.g. 127.0.0.1:4281. Bind it to a private
    /// address: it needs no certificate.
    #[arg(long, env = "LNSWARM_MANAGER_STATUS_LISTEN")]
    status_listen: Option<std::net::SocketAddr>,
    /// A PEM file of CA certificates that owners' webhook receivers may chain to,
    /// besides the public web roots (a private CA).
    #[arg(long, env = "LNSWARM_WEBHOOK_CA_FILE")]
    webhook_ca_file: Option<PathBuf>,
}

impl ServeArgs {
    fn limits(&self) -> LimitConfig {
        LimitConfig {
            per_addr_per_sec: self.anonymous_rate,
            per_addr_burst: self.anonymous_burst,
            global_per_sec: self.anonymous_global_rate,
            global_burst: self.anonymous_global_burst,
        }
    }
}

impl RaftArgs {
    fn config(&self) -> RaftConfig {
        RaftConfig {
            tick: std::time::Duration::from_millis(self.raft_tick_ms.max(1)),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            snapshot_interval: self.snapshot_interval.max(1),
            log_tail: self.log_tail,
            ..RaftConfig::default()
        }
    }
}

/// What every serving subcommand hands `run`; each arm then sets only what is its
/// own (init's database, join's seed, run's recovery flag).
fn run_config(
    data_dir: PathBuf,
    listener: std::net::TcpListener,
    raft: &RaftArgs,
    serve: &ServeArgs,
) -> run::RunConfig {
    run::RunConfig {
        data_dir,
        listener,
        raft: raft.config(),
        grpc_threads: serve.grpc_threads,
        anonymous: serve.limits(),
        max_connections_per_source: serve.max_connections_per_source,
        status_listen: serve.status_listen,
        webhook_ca_file: serve.webhook_ca_file.clone(),
        force_new_cluster: false,
        joined: None,
        db: None,
    }
}

fn bind(addr: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn read_file(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The nice value managers take when they may: ahead of agents and hosted nodes on
/// a shared host.
const MANAGER_NICE: i32 = -10;

fn main() -> anyhow::Result<()> {
    lnswarm_common::private_files::private_umask();
    // Before the runtime starts its threads, so that they all inherit it.
    let raised = lnswarm_common::priority::raise_to(MANAGER_NICE);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(async_main(raised))
}

async fn async_main(raised_priority: bool) -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if !raised_priority {
        tracing::info!(
            nice = MANAGER_NICE,
            "running at normal CPU priority (raising it needs CAP_SYS_NICE)"
        );
    }
    let config = match cli.command {
        Command::Init {
            data_dir,
            listen,
            advertise_addr,
            ca_cert,
            ca_key,
            cert_expiry,
            keep_serving,
            raft,
            serve,
        } => {
            let external_ca = match (ca_cert, ca_key) {
                (Some(c), Some(k)) => Some((read_file(&c)?, read_file(&k)?)),
                _ => None,
            };
            // Bind first so a busy port fails before anything is written.
            let listener = bind(&listen)?;
            let done = init(InitOptions {
                data_dir: data_dir.clone(),
                listen,
                advertise: advertise_addr,
                external_ca,
                cert_expiry,
            })
            .await?;
            println!("cluster id: {}", done.record.cluster_id);
            println!("worker token: {}", done.record.worker_token);
            println!("manager token: {}", done.record.manager_token);
            println!(
                "operator credentials: {}",
                DataDir::new(&data_dir).operator().display()
            );
            info!(manager = %done.config.id, cluster = %done.record.cluster_id, "cluster created");
            if !keep_serving {
                done.db.flush().context("writing the new cluster to disk")?;
                println!(
                    "start it: lnswarm-manager run --data-dir {}",
                    data_dir.display()
                );
                return Ok(());
            }
            println!(
                "manager {} listening on {}",
                done.config.id,
                listener.local_addr()?
            );
            // From here on the store is replicated: what init wrote becomes the start
            // of a one-member raft log.
            run::RunConfig {
                db: Some(done.db),
                ..run_config(data_dir, listener, &raft, &serve)
            }
        }
        Command::Join {
            data_dir,
            listen,
            advertise_addr,
            token,
            manager,
            raft,
            serve,
        } => {
            let listener = bind(&listen)?;
            let done = join(JoinOptions {
                data_dir: data_dir.clone(),
                listen,
                advertise: advertise_addr,
                token,
                manager,
            })
            .await?;
            println!(
                "manager {} joined cluster {} as raft member {:x}",
                done.config.id, done.config.cluster_id, done.seed.raft_id
            );
            info!(manager = %done.config.id, raft_id = %format!("{:x}", done.seed.raft_id), "joined the cluster");
            run::RunConfig {
                joined: Some(done.seed),
                ..run_config(data_dir, listener, &raft, &serve)
            }
        }
        Command::Run {
            data_dir,
            listen,
            force_new_cluster,
            raft,
            serve,
        } => {
            let dir = DataDir::new(&data_dir);
            let mut config = dir.read_config()?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            run::RunConfig {
                force_new_cluster,
                ..run_config(data_dir, bind(&config.listen)?, &raft, &serve)
            }
        }
        Command::Unlock { data_dir, key_file } => {
            let dir = DataDir::new(&data_dir);
            let config = dir.read_config()?;
            let ca_pem = Credentials::load(&dir.credentials())?.ca_pem;
            let key = match key_file {
                Some(path) => zeroize::Zeroizing::new(read_file(&path)?),
                None => {
                    let mut s = zeroize::Zeroizing::new(String::new());
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the unlock key from stdin")?;
                    s
                }
            };
            locked::unlock_client(&config.advertise, &config.id, &ca_pem, &key).await?;
            println!("manager {} unlocked", config.id);
            return Ok(());
        }
    };
    run::run(config, shutdown_signal()).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    lnswarm_common::signals::shutdown().await;
    info!("shutting down");
}
