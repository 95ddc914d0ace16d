//! One task's supervisor: a tokio task that starts the launch plan, reports every
//! state change (STARTING, RUNNING with the pid, exits, SHUTDOWN, COMPLETE, REJECTED),
//! restarts a crashed child with exponential backoff, and stops it when the task's
//! desired state becomes SHUTDOWN or the task is removed.
//!
//! States only move forward (the manager ignores regressions), so a crash is reported
//! in the state the task already had, with the exit in `err` and a pid of 0, and the
//! restarted child's RUNNING report carries its new pid.

use std::{path::PathBuf, sync::Arc, time::Duration};

use lnswarm_common::{
    api::{Task, TaskState, TaskStatus},
    ids::now_unix_ms,
};
use tokio::sync::watch;
use tracing::{info, info_span, warn, Instrument};

use super::{
    plan::{LaunchPlan, Readiness},
    process,
};

/// Where a supervisor sends its task's status changes.
pub trait StatusSink: Send + Sync + 'static {
    fn report(&self, task_id: &str, status: TaskStatus);
    /// Records (or clears, with pid 0) the child's pid and start time.
    fn record_process(&self, task_id: &str, pid: u32, started: u64);
}

/// What the worker wants of a supervised task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Running,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
    /// First restart delay; doubles per crash up to `restart_max`.
    pub restart_base: Duration,
    pub restart_max: Duration,
    /// A child that ran this long resets the backoff.
    pub restart_reset_after: Duration,
    /// Where each task's output goes (`<dir>/<task id>.log`).
    pub log_dir: PathBuf,
}

/// Handle to a running supervisor.
pub struct Supervisor {
    desired: watch::Sender<Desired>,
    done: watch::Receiver<bool>,
}

impl Supervisor {
    pub fn stop(&self) {
        self.desired.send_replace(Desired::Stopped);
    }

    /// Whether the supervisor finished (its child is gone for good).
    pub fn finished(&self) -> bool {
        *self.done.borrow()
    }

    /// Waits until the supervisor finished.
    pub async fn wait(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

struct Reporter {
    task_id: String,
    /// Reported beside the endpoint, whenever there is one.
    lightning_addr: String,
    version: String,
    sink: Arc<dyn StatusSink>,
    state: i32,
    last_ts: i64,
}

impl Reporter {
    fn send(
        &mut self,
        state: TaskState,
        message: impl Into<String>,
        err: String,
        pid: u32,
        endpoint: &str,
    ) {
        // States move forward only; equal states replace the detail.
        let state = (state as i32).max(self.state);
        self.state = state;
        let ts = now_unix_ms().max(self.last_ts + 1);
        self.last_ts = ts;
        self.sink.report(
            &self.task_id,
            TaskStatus {
                state,
                message: message.into(),
                err,
                timestamp_unix_ms: ts,
                pid,
                endpoint: endpoint.to_string(),
                lightning_addr: if endpoint.is_empty() {
                    String::new()
                } else {
                    self.lightning_addr.clone()
                },
                node_version: if endpoint.is_empty() {
                    String::new()
                } else {
                    self.version.clone()
                },
            },
        );
    }
}

/// Starts supervising `task` with `plan`. `initial_state` is the state last reported
/// for it (so a resumed task never reports a lower one).
pub fn spawn_supervisor(
    task: &Task,
    plan: LaunchPlan,
    initial_state: i32,
    sink: Arc<dyn StatusSink>,
    config: SupervisorConfig,
) -> Supervisor {
    let (desired, desired_rx) = watch::channel(Desired::Running);
    let (done_tx, done) = watch::channel(false);
    let reporter = Reporter {
        task_id: task.id.clone(),
        lightning_addr: plan.lightning_addr.clone(),
        version: plan.version.clone(),
        sink,
        state: initial_state,
        last_ts: 0,
    };
    let span = info_span!("task", task = %task.id);
    tokio::spawn(
        async move {
            supervise(plan, desired_rx, reporter, config).await;
            done_tx.send_replace(true);
        }
        .instrument(span),
    );
    Supervisor { desired, done }
}

/// The first readiness re-check comes this soon, then the wait doubles up to
/// [`READY_POLL_MAX`]: a node serves about 100 ms after it is spawned, and a fixed
/// 200 ms poll added most of that again to every Schedule.
const READY_POLL_FIRST: Duration = Duration::from_millis(10);
const READY_POLL_MAX: Duration = Duration::from_millis(200);

async fn wait_ready(readiness: &Readiness) {
    let mut wait = READY_POLL_FIRST;
    loop {
        let ready = match readiness {
            Readiness::Started => true,
            Readiness::TcpConnect(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
            Readiness::Check(check) => check.ready().await,
        };
        if ready {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(READY_POLL_MAX);
    }
}

async fn supervise(
    plan: LaunchPlan,
    mut desired: watch::Receiver<Desired>,
    mut r: Reporter,
    config: SupervisorConfig,
) {
    let log = config.log_dir.join(format!("{}.log", plan.log_name));
    let mut backoff = config.restart_base;
    let mut restarts = 0u32;
    loop {
        if *desired.borrow_and_update() == Desired::Stopped {
            r.send(TaskState::Shutdown, "stopped", String::new(), 0, "");
            return;
        }
        if let Some(lease) = plan.lease.as_ref().filter(|l| !l.holds()) {
            r.send(
                TaskState::Starting,
                "waiting for the agent's lease (a heartbeat the leader answers)",
                String::new(),
                0,
                "",
            );
            tokio::select! {
                () = lease.wait() => {}
                _ = desired.wait_for(|d| *d == Desired::Stopped) => continue,
            }
        }
        r.send(TaskState::Starting, "starting", String::new(), 0, "");
        let mut child = match process::start(&plan, &log).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "task could not start");
                r.send(TaskState::Rejected, "could not start", e.to_string(), 0, "");
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        r.sink
            .record_process(&r.task_id, pid, process::start_time(pid).unwrap_or(0));
        info!(pid, "task process started");
        let started_at = tokio::time::Instant::now();
        let mut running = false;
        let ready = wait_ready(&plan.readiness);
        tokio::pin!(ready);
        let lapsed = async {
            match &plan.lease {
                Some(lease) => lease.lapsed().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(lapsed);
        let mut killed_for_lease = false;
        let exit = loop {
            tokio::select! {
                status = child.wait() => break status,
                () = &mut lapsed, if !killed_for_lease => {
                    // The node stops itself when its lease runs out; one that is
                    // frozen or hung cannot, so the agent makes sure.
                    warn!(pid, "the agent's lease ran out; killing the hosted node");
                    process::kill_now(&child);
                    killed_for_lease = true;
                }
                _ = &mut ready, if !running => {
                    running = true;
                    let message = if restarts == 0 { "running".to_string() } else { format!("running (restart {restarts})") };
                    r.send(TaskState::Running, message, String::new(), pid, &plan.endpoint);
                }
                changed = desired.changed() => {
                    if changed.is_err() || *desired.borrow() == Desired::Stopped {
                        info!(pid, "stopping task process");
                        process::stop(&mut child, config.stop_grace).await;
                        r.sink.record_process(&r.task_id, 0, 0);
                        r.send(TaskState::Shutdown, "stopped", String::new(), 0, "");
                        return;
                    }
                }
            }
        };
        r.sink.record_process(&r.task_id, 0, 0);
        let exit = match exit {
            Ok(s) => s,
            Err(e) => {
                r.send(TaskState::Failed, "lost the process", e.to_string(), 0, "");
                return;
            }
        };
        if exit.success() {
            info!(pid, "task process completed");
            r.send(
                TaskState::Complete,
                "exited with status 0",
                String::new(),
                0,
                "",
            );
            return;
        }
        if exit.code() == Some(lnswarm_common::lease::EXIT_FENCED) {
            warn!(
                pid,
                "task process stopped itself: a newer copy holds its lease"
            );
            r.send(
                TaskState::Failed,
                "stopped itself: a newer copy of the node holds its lease",
                describe(exit),
                0,
                "",
            );
            return;
        }
        if started_at.elapsed() >= config.restart_reset_after {
            backoff = config.restart_base;
        }
        restarts += 1;
        crate::metrics::count_restart();
        let err = describe(exit);
        warn!(pid, %err, restart_in_ms = backoff.as_millis() as u64, "task process crashed");
        r.send(
            TaskState::Starting,
            format!(
                "crashed; restarting in {} ms (restart {restarts})",
                backoff.as_millis()
            ),
            err,
            0,
            "",
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = desired.wait_for(|d| *d == Desired::Stopped) => {}
        }
        backoff = (backoff * 2).min(config.restart_max);
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".into(),
    }
}
