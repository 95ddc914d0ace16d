//! `lnswarm-agent run`: opens the agent's state, starts the worker (which resumes
//! what a previous run left), and holds a session with the managers until SIGTERM or
//! Ctrl-C, when it stops its tasks and exits.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use lnswarm_common::{api::AgentDescription, credentials::Credentials};
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
        node_binary: sibling_binary("lnswarm-node")?,
    })
    .context("preparing to host Lightning nodes")?;
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
    info!(agent = %config.id, managers = ?config.managers, "agent running");
    let description = AgentDescription {
        hostname: hostname(),
        version: env!("CARGO_PKG_VERSION").into(),
        task_slots: opts.task_slots,
        port_range_start: port_start,
        port_range_end: port_end,
        advertised_address: config.advertise_addr.clone(),
    };
    let managers = Managers::new(&config.managers);
    let persist = {
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
    let sessions = session::run(
        credentials,
        managers,
        SessionConfig {
            description,
            backoff_base: Duration::from_millis(100),
            backoff_max: opts.reconnect_max,
            leaving,
            lease,
        },
        worker.clone(),
        persist,
    );
    tokio::pin!(sessions);
    tokio::select! {
        r = &mut sessions => return r,
        _ = shutdown_signal() => {}
    }
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

async fn shutdown_signal() {
    lnswarm_common::signals::shutdown().await;
}
