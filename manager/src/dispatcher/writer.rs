//! The dispatcher's one writer: task status reports and agent state changes found by
//! the heartbeat timers are coalesced for a short window and written in one proposal,
//! so a thousand agents reporting at once cost one Raft round, not a thousand.
//!
//! Task status rules (SwarmKit's): an update for a task that does not exist is
//! dropped, an update that would move a task's state backwards is dropped, and a task
//! whose desired state is SHUTDOWN is deleted once its agent reports it stopped.
//! Status-only writes carry no agent watch tag: the agent already knows what it
//! reported, so they must not wake its Assignments stream.

use std::{collections::HashMap, sync::Arc};

use lnswarm_common::{
    api::{Agent, AgentState, AgentStatus, Task, TaskState, TaskStatus},
    ids::now_unix_ms,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{config::DispatcherConfig, sessions::Sessions};
use crate::store::{keys, Attempt, Store, StoreError, TxnBuilder};

/// One pending write.
pub enum Write {
    TaskStatus {
        task_id: String,
        status: TaskStatus,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    /// Mark the agent DOWN (or UNKNOWN) unless it holds a live session by the time
    /// the batch is written.
    AgentState {
        agent_id: String,
        state: AgentState,
        message: String,
    },
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Write>,
}

impl Writer {
    pub fn start(store: Store, sessions: Arc<Sessions>, config: DispatcherConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, sessions, config, rx));
        Writer { tx }
    }

    pub fn send(&self, w: Write) {
        let _ = self.tx.send(w);
    }

    /// Queues task status updates and waits until they are written.
    pub async fn task_statuses(
        &self,
        updates: impl IntoIterator<Item = (String, TaskStatus)>,
    ) -> Result<(), StoreError> {
        let mut waits = Vec::new();
        for (task_id, status) in updates {
            let (done, rx) = oneshot::channel();
            self.send(Write::TaskStatus {
                task_id,
                status,
                done: Some(done),
            });
            waits.push(rx);
        }
        for w in waits {
            w.await
                .map_err(|_| StoreError::Unavailable("dispatcher stopped".into()))??;
        }
        Ok(())
    }
}

async fn run(
    store: Store,
    sessions: Arc<Sessions>,
    config: DispatcherConfig,
    mut rx: mpsc::UnboundedReceiver<Write>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + config.status_window;
        while batch.len() < config.status_max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(w)) => batch.push(w),
                Ok(None) | Err(_) => break,
            }
        }
        flush(&store, &sessions, std::mem::take(&mut batch)).await;
    }
}

/// The state an update may move a task to: forward only; equal states replace the
/// detail when they are newer.
fn supersedes(new: &TaskStatus, old: Option<&TaskStatus>) -> bool {
    match old {
        None => true,
        Some(old) => {
            new.state > old.state
                || (new.state == old.state && new.timestamp_unix_ms >= old.timestamp_unix_ms)
        }
    }
}

fn is_terminal(state: i32) -> bool {
    state >= TaskState::Complete as i32
}

async fn flush(store: &Store, sessions: &Sessions, batch: Vec<Write>) {
    // Coalesce: the latest report per task, the last state per agent.
    let mut statuses: HashMap<String, TaskStatus> = HashMap::new();
    let mut waiters = Vec::new();
    let mut agents: HashMap<String, (AgentState, String)> = HashMap::new();
    for w in batch {
        match w {
            Write::TaskStatus {
                task_id,
                status,
                done,
            } => {
                if supersedes(&status, statuses.get(&task_id)) {
                    statuses.insert(task_id, status);
                }
                waiters.extend(done);
            }
            Write::AgentState {
                agent_id,
                state,
                message,
            } => {
                agents.insert(agent_id, (state, message));
            }
        }
    }
    // Rebuilt from the store on each attempt: a failed check means someone wrote
    // one of these tasks or agents meanwhile.
    let result = store
        .update("the status batch", |store| {
            batch_txn(store, sessions, &statuses, &agents)
        })
        .await
        .map(|_| ());
    if let Err(e) = &result {
        warn!(error = %e, "writing a status batch failed");
    }
    for w in waiters {
        let _ = w.send(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        });
    }
}

/// One attempt at the batch's transaction, its checks guarding what it read.
fn batch_txn(
    store: &Store,
    sessions: &Sessions,
    statuses: &HashMap<String, TaskStatus>,
    agents: &HashMap<String, (AgentState, String)>,
) -> Result<Attempt<()>, StoreError> {
    let mut txn = TxnBuilder::new();
    let mut ops = 0;
    for (task_id, status) in statuses {
        let key = keys::task(task_id);
        let Some((version, mut task)) = store.get::<Task>(&key)? else {
            continue;
        };
        if !supersedes(status, task.status.as_ref()) {
            continue;
        }
        txn = txn.require_version(&key, version);
        ops += 1;
        if task.desired_state == TaskState::Shutdown as i32 && is_terminal(status.state) {
            debug!(task = %task_id, "stopped task removed");
            txn = txn.delete_tagged(&key, [keys::agent_tag(&task.agent_id)]);
        } else {
            task.status = Some(status.clone());
            txn = txn.put(&key, &task);
        }
    }
    for (agent_id, (state, message)) in agents {
        if sessions.is_live(agent_id) {
            continue;
        }
        let key = keys::agent(agent_id);
        let Some((version, mut agent)) = store.get::<Agent>(&key)? else {
            continue;
        };
        let current = agent.status.as_ref().map(|s| s.state).unwrap_or_default();
        if current == *state as i32 || current == AgentState::Disconnected as i32 {
            continue;
        }
        if *state == AgentState::Unknown && current == AgentState::Down as i32 {
            continue;
        }
        info!(agent = %agent_id, state = ?state, "agent state changed");
        agent.status = Some(AgentStatus {
            state: *state as i32,
            message: message.clone(),
            addr: agent.status.map(|s| s.addr).unwrap_or_default(),
            since_unix_ms: now_unix_ms(),
        });
        txn = txn.require_version(&key, version).put_tagged(
            &key,
            &agent,
            [keys::agent_tag(agent_id)],
        );
        ops += 1;
    }
    if ops == 0 {
        return Ok(Attempt::Done(()));
    }
    Ok(Attempt::Propose(txn.build(), ()))
}
