//! The lnswarm side: one real manager (`lnswarm-manager init` on a test CA, so agent
//! certificates can be minted quickly instead of joined one by one) and N simulated
//! agents in this process, each with its own mTLS connection, an open Session and a
//! heartbeat loop at the period the dispatcher returns.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use lnswarm_common::{
    api::{
        control_client::ControlClient, dispatcher_client::DispatcherClient, AgentState,
        HeartbeatRequest, ListAgentsRequest, SessionRequest,
    },
    credentials::Credentials,
    pki::Role,
    tls,
};
use lnswarm_tests::{agents::description, certs::TestCa, manager::TestManager};

use crate::{
    stats::{measure_windows, rss_mib, RunResult},
    Options,
};

struct Shared {
    measuring: AtomicBool,
    beats: AtomicUsize,
    errors: AtomicUsize,
    latencies: Mutex<Vec<u32>>,
}

pub async fn run(n: usize, opts: &Options) -> Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new(&lnswarm_common::ids::new_id());
    // Every simulated agent connects from 127.0.0.1.
    let m = TestManager::init_with(
        dir.path(),
        Some(&ca),
        &["--max-connections-per-source", "0"],
    )
    .await;
    lnswarm_tests::agents::set_heartbeat(&m, opts.period.as_millis() as u64, 3).await;
    let pid = m.proc.pid();
    eprintln!("[lnswarm] N={n}: minting {n} worker certificates");
    let creds: Vec<Credentials> = (0..n)
        .map(|i| ca.mint(Role::Worker, &format!("bench-agent-{i:06}")))
        .collect();
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        beats: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    eprintln!("[lnswarm] N={n}: connecting agents");
    let started = Instant::now();
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // Ramp: a bounded number of handshakes in flight.
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut handles = Vec::with_capacity(n);
    for c in creds {
        let permit = sem.clone().acquire_owned().await?;
        let (addr, shared, connected, failed) = (
            m.addr.clone(),
            shared.clone(),
            connected.clone(),
            failed.clone(),
        );
        handles.push(tokio::spawn(async move {
            let guard = ConnectGuard {
                connected,
                failed,
                done: false,
                permit: Some(permit),
            };
            run_agent(addr, c, shared, guard).await
        }));
    }
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "[lnswarm] N={n}: {} sessions open in {:.1} s ({} failed); warming up one period",
        connected.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    tokio::time::sleep(opts.period + Duration::from_secs(1)).await;

    shared.measuring.store(true, Ordering::SeqCst);
    let (windows, window) =
        measure_windows(opts.measure, opts.windows, &shared.beats, &[pid]).await;
    shared.measuring.store(false, Ordering::SeqCst);
    let rss = rss_mib(pid);

    // Validity: nobody was marked DOWN while heartbeating.
    let op = m.operator();
    let listed = Instant::now();
    let agents = ControlClient::new(m.channel_as(Some(&op)).await)
        .max_decoding_message_size(256 * 1024 * 1024)
        .list_agents(ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    eprintln!(
        "[lnswarm] N={n}: ListAgents returned {} agents in {:.1} ms",
        agents.len(),
        listed.elapsed().as_secs_f64() * 1e3
    );
    let ready = agents
        .iter()
        .filter(|a| a.status.as_ref().map(|s| s.state) == Some(AgentState::Ready as i32))
        .count();
    for h in handles {
        h.abort();
    }
    let latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    Ok(RunResult {
        windows,
        window,
        latencies_us: latencies,
        server_rss_mib: rss,
        errors: shared.errors.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
        note: if ready == n {
            String::new()
        } else {
            format!("{ready}/{n} READY at the end")
        },
    })
}

/// Counts an agent as connected (or failed) once, and releases its ramp permit.
struct ConnectGuard {
    connected: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    done: bool,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ConnectGuard {
    fn connected(&mut self) {
        if !self.done {
            self.done = true;
            self.connected.fetch_add(1, Ordering::Relaxed);
            self.permit = None;
        }
    }
}

impl Drop for ConnectGuard {
    fn drop(&mut self) {
        if !self.done {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One simulated agent: connect, open a Session, then heartbeat at the period the
/// dispatcher returns, recording latencies while measuring.
async fn run_agent(
    addr: String,
    creds: Credentials,
    shared: Arc<Shared>,
    mut guard: ConnectGuard,
) -> Result<()> {
    let channel = tls::connect(&addr, &creds.client_tls()?, Role::Manager).await?;
    let mut client = DispatcherClient::new(channel);
    let mut session = client
        .session(SessionRequest {
            description: Some(description("bench")),
            session_id: String::new(),
        })
        .await?
        .into_inner();
    let first = session.message().await?.context("no session message")?;
    // The session stream stays open for the agent's life.
    tokio::spawn(async move { while let Ok(Some(_)) = session.message().await {} });
    guard.connected();
    let session_id = first.session_id;
    loop {
        let started = Instant::now();
        let r = client
            .heartbeat(HeartbeatRequest {
                session_id: session_id.clone(),
                leaving: false,
            })
            .await;
        let took = started.elapsed();
        let period = match r {
            Ok(r) => {
                if shared.measuring.load(Ordering::Relaxed) {
                    shared.beats.fetch_add(1, Ordering::Relaxed);
                    shared
                        .latencies
                        .lock()
                        .unwrap()
                        .push(took.as_micros().min(u32::MAX as u128) as u32);
                }
                Duration::from_millis(r.into_inner().period_ms)
            }
            Err(_) => {
                if shared.measuring.load(Ordering::Relaxed) {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                Duration::from_secs(1)
            }
        };
        tokio::time::sleep(period.saturating_sub(took)).await;
    }
}
