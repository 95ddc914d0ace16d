//! Reconciles the assignment set with what runs on this host. A COMPLETE set is the
//! whole truth (tasks outside it are stopped and forgotten); an INCREMENTAL one is
//! applied on top. Tasks whose desired state is RUNNING get a supervisor; SHUTDOWN or
//! REMOVE stops it. Secrets are kept in memory only and dropped when no task names
//! them.

mod board;
mod state;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use lnswarm_common::api::{
    assignment::Item, AssignmentAction, AssignmentChange, Task, TaskState, TaskStatus,
};
use tracing::{info, warn};

pub use board::StatusBoard;
pub use state::{AgentState, StateError};

use crate::executor::{
    kill_stale, spawn_supervisor, ExecutorError, Runtimes, SecretBytes, Secrets, StatusSink,
    Supervisor, SupervisorConfig,
};

pub struct Worker {
    state: AgentState,
    board: Arc<StatusBoard>,
    runtimes: Runtimes,
    config: SupervisorConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The assignment set: every task the manager placed here.
    tasks: HashMap<String, Task>,
    secrets: Secrets,
    supervisors: HashMap<String, Supervisor>,
    /// Set once the agent is shutting down: nothing new starts after that, so no
    /// child outlives the agent's stop.
    stopping: bool,
}

fn wants_running(task: &Task) -> bool {
    task.desired_state <= TaskState::Running as i32
}

impl Worker {
    /// Opens the agent's state, stops any child a previous run left behind, and
    /// restarts the tasks it knew that need no secret.
    pub async fn open(
        state: AgentState,
        runtimes: Runtimes,
        config: SupervisorConfig,
    ) -> Result<Arc<Self>, StateError> {
        for (task_id, pid, started) in state.processes()? {
            info!(task = %task_id, pid, "stopping a task process left by a previous run");
            kill_stale(pid, started, config.stop_grace).await;
            state.record_process(&task_id, 0, 0)?;
        }
        let board = Arc::new(StatusBoard::new(state.clone())?);
        let worker = Arc::new(Worker {
            state: state.clone(),
            board,
            runtimes,
            config,
            inner: Mutex::new(Inner::default()),
        });
        let tasks = state.tasks()?;
        {
            let mut inner = worker.inner.lock().expect("worker lock");
            for task in tasks {
                inner.tasks.insert(task.id.clone(), task);
            }
            worker.reconcile(&mut inner);
        }
        Ok(worker)
    }

    pub fn board(&self) -> &Arc<StatusBoard> {
        &self.board
    }

    /// Applies one Assignments message's changes; `complete` replaces the set.
    pub fn apply(&self, complete: bool, changes: Vec<AssignmentChange>) {
        let mut inner = self.inner.lock().expect("worker lock");
        let mut seen = HashSet::new();
        let mut new_secrets = Secrets::new();
        // Secrets first, so tasks in the same message find them.
        let mut task_changes = Vec::new();
        for c in changes {
            let remove = c.action == AssignmentAction::Remove as i32;
            match c.assignment.and_then(|a| a.item) {
                Some(Item::Secret(s)) if remove => {
                    inner.secrets.remove(&s.id);
                }
                Some(Item::Secret(s)) => {
                    new_secrets.insert(s.id.clone(), SecretBytes(s.data));
                }
                Some(Item::Task(t)) => task_changes.push((remove, t)),
                Some(Item::Config(_)) | None => {}
            }
        }
        if complete {
            inner.secrets = new_secrets;
        } else {
            inner.secrets.extend(new_secrets);
        }
        for (remove, task) in task_changes {
            seen.insert(task.id.clone());
            if remove {
                self.forget(&mut inner, &task.id);
            } else {
                if let Err(e) = self.state.put_task(&task) {
                    warn!(error = %e, task = %task.id, "could not persist a task");
                }
                inner.tasks.insert(task.id.clone(), task);
            }
        }
        if complete {
            let gone: Vec<String> = inner
                .tasks
                .keys()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect();
            for id in gone {
                self.forget(&mut inner, &id);
            }
        }
        // Drop secrets no task names.
        let named: HashSet<String> = inner
            .tasks
            .values()
            .flat_map(|t| t.spec.iter().flat_map(|s| s.secret_ids.iter().cloned()))
            .collect();
        inner.secrets.retain(|id, _| named.contains(id));
        self.reconcile(&mut inner);
    }

    fn forget(&self, inner: &mut Inner, task_id: &str) {
        inner.tasks.remove(task_id);
        if let Some(sup) = inner.supervisors.remove(task_id) {
            sup.stop();
            let state = self.state.clone();
            let board = self.board.clone();
            let id = task_id.to_string();
            tokio::spawn(async move {
                sup.wait().await;
                let _ = state.forget_task(&id);
                board.forget(&id);
            });
        } else {
            let _ = self.state.forget_task(task_id);
            self.board.forget(task_id);
        }
    }

    /// Starts or stops supervisors to match the set.
    fn reconcile(&self, inner: &mut Inner) {
        inner.supervisors.retain(|_, s| !s.finished());
        let ids: Vec<String> = inner.tasks.keys().cloned().collect();
        for id in ids {
            let task = inner.tasks[&id].clone();
            let reported = self.board.state_of(&id);
            let finished = reported >= TaskState::Complete as i32;
            if !wants_running(&task) {
                match inner.supervisors.get(&id) {
                    Some(sup) => sup.stop(),
                    None if !finished => self.board.report(
                        &id,
                        TaskStatus {
                            state: TaskState::Shutdown as i32,
                            message: "stopped".into(),
                            ..Default::default()
                        },
                    ),
                    None => {}
                }
                continue;
            }
            if finished || inner.stopping || inner.supervisors.contains_key(&id) {
                continue;
            }
            match self.runtimes.plan(&task, &inner.secrets) {
                Ok(plan) => {
                    let sup = spawn_supervisor(
                        &task,
                        plan,
                        reported,
                        self.board.clone(),
                        self.config.clone(),
                    );
                    inner.supervisors.insert(id, sup);
                }
                Err(ExecutorError::MissingSecret(s)) => {
                    if reported < TaskState::Preparing as i32 {
                        self.board.report(
                            &id,
                            TaskStatus {
                                state: TaskState::Preparing as i32,
                                message: format!("waiting for secret {s}"),
                                ..Default::default()
                            },
                        );
                    }
                }
                Err(e) => self.board.report(
                    &id,
                    TaskStatus {
                        state: TaskState::Rejected as i32,
                        message: "cannot run this task".into(),
                        err: e.to_string(),
                        ..Default::default()
                    },
                ),
            }
        }
    }

    /// Stops every task (the agent is shutting down).
    pub async fn stop_all(&self, timeout: Duration) {
        let sups: Vec<Supervisor> = {
            let mut inner = self.inner.lock().expect("worker lock");
            inner.stopping = true;
            inner.supervisors.drain().map(|(_, s)| s).collect()
        };
        for s in &sups {
            s.stop();
        }
        let _ = tokio::time::timeout(
            timeout,
            futures::future::join_all(sups.iter().map(|s| s.wait())),
        )
        .await;
    }
}
