//! `lnswarm-agent run`: opens the agent's state, starts the worker (which resumes
//! what a previous run left), and holds a session with the managers until SIGTERM or
//! Ctrl-C, when it stops its tasks and exits.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use lnswarm_common::{
    api::AgentDescription,
    cert_renewal::{
        probe_managers, save_credentials, through_managers, Renewal, RenewalStopped, TrustSync,
    },
    credentials::Credentials,
    pki::Role,
    tls::{ClientTls, LiveIdentity},
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    executor::{CommandRuntime, Runtimes, SupervisorConfig},
    hosting::{HostedNodeRuntime, HostingConfig},
    layout::DataDir,
    lease::AgentLease,
    session::{self, Managers, SessionConfig},
    worker::{AgentState, Worker},
};

pub struct RunOptions {
    pub data_dir: PathBuf,
    pub task_slots: u32,
    /// FIRST-LAST.
    pub port_range: String,
    pub stop_grace: Duration,
    pub restart_backoff: Duration,
    pub reconnect_max: Duration,
    /// Where to serve `/healthz`, if anywhere.
    pub status_listen: Option<std::net::SocketAddr>,
    /// The `lnswarm-node` binary; the one next to this one when `None`.
    pub node_binary: Option<PathBuf>,
    pub log_format: lnswarm_common::telemetry::LogFormat,
}

fn parse_range(s: &str) -> anyhow::Result<(u32, u32)> {
    let (a, b) = s
        .split_once('-')
        .context("--port-range must be FIRST-LAST")?;
    let (a, b): (u32, u32) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(
        a <= b && b <= 65_535,
        "--port-range must be FIRST-LAST within 0-65535"
    );
    Ok((a, b))
}

/// A binary installed next to this one (`lnswarm-node` ships with the agent).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating lnswarm-agent")?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found next to lnswarm-agent",
        path.display()
    );
    Ok(path)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let dir = DataDir::new(&opts.data_dir);
    lnswarm_common::private_files::restrict_tree(dir.root())
        .with_context(|| format!("making {} private", dir.root().display()))?;
    let config = dir.read_config()?;
    let credentials = Credentials::load(&dir.credentials())
        .with_context(|| format!("loading credentials from {}", dir.credentials().display()))?;
    refuse_expired(&credentials, &opts.data_dir)?;
    // Renewal swaps the certificate here; every new connection presents it.
    let identity = LiveIdentity::new(&credentials.cert_pem, &credentials.key_pem)
        .context("loading the agent's certificate")?;
    let tls = lnswarm_common::tls::client_config_live(&credentials.ca_pem, Some(identity.clone()))?;
    let (port_start, port_end) = parse_range(&opts.port_range)?;
    std::fs::create_dir_all(dir.task_logs())
        .with_context(|| format!("creating {}", dir.task_logs().display()))?;
    let state = AgentState::open(&dir.state())
        .with_context(|| format!("opening the agent state at {}", dir.state().display()))?;
    let nodes_root = opts.data_dir.join("nodes");
    let lease = Arc::new(
        AgentLease::new(&nodes_root)
            .with_context(|| format!("creating the lease file in {}", nodes_root.display()))?,
    );
    let manager_list = Arc::new(std::sync::Mutex::new(config.managers.clone()));
    let hosting = HostedNodeRuntime::new(HostingConfig {
        nodes_root,
        lease: lease.clone(),
        managers: manager_list.clone(),
        ca_file: dir.credentials().join("ca.pem"),
        advertise_host: config.advertise_addr.clone(),
        port_range: (port_start as u16, port_end as u16),
        node_binary: match &opts.node_binary {
            Some(path) => path.clone(),
            None => sibling_binary("lnswarm-node")?,
        },
        log_format: opts.log_format,
    })
    .context("preparing to host Lightning nodes")?;
    let node_binary = hosting.node_binary();
    let runtimes = Runtimes {
        command: Arc::new(CommandRuntime),
        hosted_node: Some(Arc::new(hosting)),
    };
    let worker = Worker::open(
        state,
        runtimes,
        SupervisorConfig {
            stop_grace: opts.stop_grace,
            restart_base: opts.restart_backoff,
            restart_max: Duration::from_secs(30),
            restart_reset_after: Duration::from_secs(60),
            log_dir: dir.task_logs(),
        },
    )
    .await?;
    // The earlier run's nodes are stopped (cleanly): only now is its lease cleared.
    lease
        .forget_earlier_run()
        .with_context(|| format!("clearing the lease file in {}", opts.data_dir.display()))?;
    info!(agent = %config.id, managers = ?config.managers, "agent running");
    // systemd's Type=notify (a no-op outside systemd).
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let description = AgentDescription {
        hostname: hostname(),
        version: env!("CARGO_PKG_VERSION").into(),
        task_slots: opts.task_slots,
        port_range_start: port_start,
        port_range_end: port_end,
        advertised_address: config.advertise_addr.clone(),
        // Filled in by each session, from the binary as it is then.
        node_version: String::new(),
    };
    let managers = Managers::new(&config.managers);
    let persist = {
        let manager_list = manager_list.clone();
        let data_dir = opts.data_dir.clone();
        let known = std::sync::Mutex::new(config.managers.clone());
        move |addrs: &[String]| {
            let mut known = known.lock().expect("managers lock");
            if known.as_slice() != addrs {
                *known = addrs.to_vec();
                *manager_list.lock().expect("managers lock") = addrs.to_vec();
                let dir = DataDir::new(&data_dir);
                if let Ok(mut c) = dir.read_config() {
                    c.managers = addrs.to_vec();
                    if let Err(e) = dir.write_config(&c) {
                        tracing::warn!(error = %e, "could not save the manager list");
                    }
                }
            }
        }
    };
    let (leave, leaving) = tokio::sync::watch::channel(false);
    let stop_renewal = CancellationToken::new();
    if let Some(addr) = opts.status_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for health checks on {addr}"))?;
        info!(%addr, "serving /healthz and /metrics");
        let metrics = {
            let (worker, lease, identity) = (worker.clone(), lease.clone(), identity.clone());
            Arc::new(move || crate::metrics::render(&worker, &lease, &identity))
        };
        tokio::spawn(lnswarm_common::status_server::serve(
            listener,
            lnswarm_common::status_server::Endpoints {
                health: agent_health(lease.clone(), worker.clone()),
                metrics,
            },
            stop_renewal.clone(),
        ));
    }
    let renewal = keep_renewed(
        identity,
        tls.clone(),
        manager_list.clone(),
        dir.credentials(),
        stop_renewal.clone(),
    );
    let sessions = session::run(
        tls,
        managers,
        SessionConfig {
            description,
            backoff_base: Duration::from_millis(100),
            backoff_max: opts.reconnect_max,
            leaving,
            lease,
            node_binary: Some(node_binary),
        },
        worker.clone(),
        persist,
    );
    tokio::pin!(sessions);
    tokio::pin!(renewal);
    tokio::select! {
        r = &mut sessions => return r,
        r = &mut renewal => {
            // Nothing this agent does can succeed any more; say why and stop.
            let e = r.expect_err("renewal runs until stopped");
            return Err(anyhow::anyhow!(rejoin_advice(&opts.data_dir))
                .context(format!("this agent's certificate can no longer be renewed: {e}")));
        }
        _ = shutdown_signal() => {}
    }
    stop_renewal.cancel();
    info!("stopping tasks");
    // The session stays up meanwhile, so the tasks' SHUTDOWN reaches the manager.
    let stop = worker.stop_all(opts.stop_grace + Duration::from_secs(1));
    tokio::select! {
        _ = stop => {}
        _ = &mut sessions => {}
    }
    let _ = tokio::time::timeout(Duration::from_millis(300), &mut sessions).await;
    // Say goodbye: the manager marks this agent DISCONNECTED rather than DOWN.
    leave.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), &mut sessions).await;
    Ok(())
}

/// Healthy while the managers vouch for this agent: its lease holds, which takes a
/// session whose heartbeats are answered and whose assignments are applied (what
/// hosted nodes need to run).
fn agent_health(
    lease: Arc<AgentLease>,
    worker: Arc<Worker>,
) -> lnswarm_common::status_server::HealthFn {
    Arc::new(move || {
        let holds = lease.holds();
        let details = serde_json::json!({
            "status": if holds { "ready" } else { "not vouched for by the managers" },
            "lease_ms_left": lease.remaining_ms(),
            "tasks": worker.board().all().len(),
        });
        (holds, details)
    })
}

/// What an agent whose certificate has run out must do.
fn rejoin_advice(data_dir: &std::path::Path) -> String {
    format!(
        "join the cluster again with a worker token, into a new data directory: \
         `lnswarm-agent join --data-dir NEW_DIR --token TOKEN --manager ADDR` \
         (`lnswarmctl cluster join-token worker` prints the token), then run it and remove \
         {} and the old agent (`lnswarmctl agent rm`). Its hosted nodes have moved to \
         other agents meanwhile.",
        data_dir.display()
    )
}

/// An agent that was away longer than its certificate's lifetime could not renew
/// it, and every manager refuses it now: refused here, before anything is changed.
fn refuse_expired(credentials: &Credentials, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let (_, not_after) = lnswarm_common::pki::validity_of(&credentials.cert_pem)
        .context("reading the agent's certificate")?;
    if lnswarm_common::ids::now_unix_ms() / 1000 >= not_after {
        let at = time::OffsetDateTime::from_unix_timestamp(not_after)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| not_after.to_string());
        anyhow::bail!(
            "this agent's certificate expired at {at}: it was stopped for longer than the \
             cluster's certificate lifetime, so it could not renew it. To serve again, {}",
            rejoin_advice(data_dir)
        );
    }
    Ok(())
}

/// Renews the agent's certificate through the managers until `stop`; returns
/// only if renewal can no longer succeed.
async fn keep_renewed(
    identity: Arc<LiveIdentity>,
    tls: ClientTls,
    managers: Arc<std::sync::Mutex<Vec<String>>>,
    credentials_dir: PathBuf,
    stop: CancellationToken,
) -> Result<(), RenewalStopped> {
    let trust = tls.verifier().cloned().map(|verifier| TrustSync {
        verifier,
        probe: {
            let managers = managers.clone();
            probe_managers(
                move || managers.lock().expect("managers lock").clone(),
                tls.clone(),
            )
        },
        // Also the file the agent's hosted nodes start with.
        ca_file: Some(credentials_dir.join("ca.pem")),
    });
    Renewal {
        identity,
        role: Role::Worker,
        request: through_managers(
            move || managers.lock().expect("managers lock").clone(),
            tls,
            0,
        ),
        save: save_credentials(credentials_dir),
        trust,
    }
    .run(stop)
    .await
}

async fn shutdown_signal() {
    lnswarm_common::signals::shutdown().await;
}
