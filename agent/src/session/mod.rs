//! The agent's dispatcher client: one Session at a time with some manager. While the
//! session lives it heartbeats at the period the manager returns, reports task status
//! (every task's on each new session, then changes), and follows the Assignments
//! chain. When anything fails the session is dropped and reopened with jittered
//! exponential backoff across the weighted manager list; a follower's hint sends the
//! agent straight to the leader.

mod backoff;
mod chain;
mod managers;

use std::{sync::Arc, time::Duration};

use lnswarm_common::{
    api::{
        dispatcher_client::DispatcherClient, AgentDescription, HeartbeatRequest, SessionRequest,
        TaskStatusUpdate, UpdateTaskStatusRequest,
    },
    tls::{self, ClientTls},
};
use tonic::{transport::Channel, Code, Status};
use tracing::{debug, info, info_span, warn, Instrument};

pub use backoff::Backoff;
pub use chain::{Chain, ChainStep};
pub use managers::Managers;

use crate::worker::Worker;

/// Largest message the agent accepts (a COMPLETE set may be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connecting: {0}")]
    Connect(#[from] tls::TlsError),
    #[error("{what}: {status}")]
    Rpc { what: &'static str, status: Status },
    #[error("the session stream ended")]
    Ended,
    #[error("the manager sent no session message in time")]
    Timeout,
    #[error(
        "the lnswarm-node binary changed to version {0:?}; reopening the session to report it"
    )]
    NodeBinaryChanged(String),
}

fn rpc(what: &'static str) -> impl FnOnce(Status) -> SessionError {
    move |status| SessionError::Rpc { what, status }
}

pub struct SessionConfig {
    pub description: AgentDescription,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Set when the agent shuts down: the session says so in a last heartbeat (the
    /// manager marks the agent DISCONNECTED) and `run` returns.
    pub leaving: tokio::sync::watch::Receiver<bool>,
    /// The hosted nodes' lease, renewed by answered heartbeats.
    pub lease: Arc<crate::lease::AgentLease>,
    /// The `lnswarm-node` binary, whose version the description carries: a session
    /// is reopened when it changes, so the managers learn the agent ships another.
    pub node_binary: Option<Arc<crate::hosting::NodeBinary>>,
}

/// How often the agent looks at its `lnswarm-node` binary for a new version.
const NODE_BINARY_CHECK: Duration = Duration::from_secs(2);

/// Runs sessions until the process ends. `on_managers` sees each new manager list.
pub async fn run(
    tls: ClientTls,
    mut managers: Managers,
    config: SessionConfig,
    worker: Arc<Worker>,
    on_managers: impl Fn(&[String]) + Send + Sync,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_max);
    // Survives reconnects (even to another manager) within this process; a new
    // process starts from a COMPLETE set, since secrets live only in memory.
    let mut chain = Chain::default();
    let mut last_failed: Option<String> = None;
    loop {
        let Some(addr) = managers.pick(last_failed.as_deref()) else {
            anyhow::bail!("no manager address known");
        };
        let started = tokio::time::Instant::now();
        let result = one_session(
            &addr,
            &tls,
            &config,
            &worker,
            &mut chain,
            &mut managers,
            &on_managers,
        )
        .await;
        match &result {
            Err(SessionError::Rpc { status, .. }) if status.code() == Code::Unavailable => {
                if let Some(leader) = status
                    .metadata()
                    .get("lnswarm-leader-addr")
                    .and_then(|v| v.to_str().ok())
                {
                    info!(manager = %addr, leader, "not the leader; moving to the leader");
                    managers.hint(leader.to_string());
                    last_failed = None;
                    continue;
                }
            }
            _ => {}
        }
        if *config.leaving.borrow() {
            info!("session closed: the agent is shutting down");
            return Ok(());
        }
        match &result {
            Err(e @ SessionError::NodeBinaryChanged(_)) => info!(manager = %addr, "{e}"),
            Err(e) => warn!(manager = %addr, error = %e, "session ended"),
            Ok(()) => {}
        }
        last_failed = match result {
            Err(SessionError::Connect(_)) => Some(addr),
            // Not a failure: reopen at once, with the new description.
            Err(SessionError::NodeBinaryChanged(_)) => continue,
            _ => None,
        };
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        debug!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting after backoff"
        );
        tokio::time::sleep(delay).await;
    }
}

async fn one_session(
    addr: &str,
    tls: &ClientTls,
    config: &SessionConfig,
    worker: &Arc<Worker>,
    chain: &mut Chain,
    managers: &mut Managers,
    on_managers: &(impl Fn(&[String]) + Send + Sync),
) -> Result<(), SessionError> {
    let channel = tls::connect(addr, tls, managers.expected_at(addr)).await?;
    let mut client =
        DispatcherClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut description = config.description.clone();
    if let Some(binary) = &config.node_binary {
        description.node_version = node_version(binary).await;
    }
    let mut session = client
        .session(SessionRequest {
            description: Some(description.clone()),
            session_id: String::new(),
        })
        .await
        .map_err(rpc("opening the session"))?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), session.message())
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(rpc("reading the session"))?
        .ok_or(SessionError::Ended)?;
    let session_id = first.session_id.clone();
    managers.update(first.managers.clone());
    on_managers(&managers.addrs());
    let span = info_span!("session", manager = %addr, session = %session_id);
    span.in_scope(|| info!("session open"));

    // Set once this session's first assignment set is applied: only then may its
    // heartbeats renew the lease.
    let (synced, synced_rx) = tokio::sync::watch::channel(false);
    async {
        let stream = async {
            loop {
                match session.message().await.map_err(rpc("session stream"))? {
                    Some(m) => {
                        managers.update(m.managers);
                        on_managers(&managers.addrs());
                    }
                    None => return Err::<(), _>(SessionError::Ended),
                }
            }
        };
        tokio::select! {
            r = stream => r,
            r = heartbeat(channel.clone(), &session_id, config.leaving.clone(), &config.lease, synced_rx) => r,
            r = report(channel.clone(), &session_id, worker) => r,
            r = chain::follow(channel, &session_id, chain, worker, &synced) => r,
            r = binary_changed(config.node_binary.as_ref(), &description.node_version) => r,
        }
    }
    .instrument(span)
    .await
}

/// The binary's version, read off the runtime's threads (it may run the binary).
async fn node_version(binary: &Arc<crate::hosting::NodeBinary>) -> String {
    let binary = binary.clone();
    tokio::task::spawn_blocking(move || binary.version())
        .await
        .unwrap_or_default()
}

/// Returns once the binary's version is no longer `reported`; never without one.
async fn binary_changed(
    binary: Option<&Arc<crate::hosting::NodeBinary>>,
    reported: &str,
) -> Result<(), SessionError> {
    let Some(binary) = binary else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(NODE_BINARY_CHECK).await;
        let now = node_version(binary).await;
        if now != reported {
            info!(version = %now, "the lnswarm-node binary changed");
            return Err(SessionError::NodeBinaryChanged(now));
        }
    }
}

/// Heartbeats at the period the manager returns, starting at once (and again as
/// soon as the assignment set is applied, to renew the lease without waiting).
async fn heartbeat(
    channel: Channel,
    session_id: &str,
    mut leaving: tokio::sync::watch::Receiver<bool>,
    lease: &crate::lease::AgentLease,
    mut synced: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let mut client = DispatcherClient::new(channel);
    loop {
        let left = *leaving.borrow_and_update();
        let renews = *synced.borrow_and_update();
        let sent = lnswarm_common::lease::now_boot_ms();
        let mut req = tonic::Request::new(HeartbeatRequest {
            session_id: session_id.to_string(),
            leaving: left,
        });
        req.set_timeout(Duration::from_secs(5));
        let answer = client
            .heartbeat(req)
            .await
            .map_err(rpc("heartbeat"))?
            .into_inner();
        if left {
            return Err(SessionError::Ended);
        }
        if renews && answer.ttl_ms > 0 {
            lease.renew(sent, Duration::from_millis(answer.ttl_ms));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(answer.period_ms.max(50))) => {}
            _ = leaving.wait_for(|l| *l) => {}
            _ = synced.wait_for(|s| *s), if !renews => {}
        }
    }
}

/// Reports every task's status once, then each change as it happens.
async fn report(
    channel: Channel,
    session_id: &str,
    worker: &Arc<Worker>,
) -> Result<(), SessionError> {
    let mut client = DispatcherClient::new(channel);
    let board = worker.board().clone();
    let mut batch = board.all();
    loop {
        if !batch.is_empty() {
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            let req = UpdateTaskStatusRequest {
                session_id: session_id.to_string(),
                updates: batch
                    .into_iter()
                    .map(|(task_id, status)| TaskStatusUpdate {
                        task_id,
                        status: Some(status),
                    })
                    .collect(),
            };
            if let Err(status) = client.update_task_status(req).await {
                board.mark_dirty(ids);
                return Err(SessionError::Rpc {
                    what: "reporting task status",
                    status,
                });
            }
        }
        let changed = board.changed();
        tokio::pin!(changed);
        batch = board.take_dirty();
        if batch.is_empty() {
            changed.await;
            batch = board.take_dirty();
        }
    }
}
