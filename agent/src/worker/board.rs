//! The latest status of every task on this agent, persisted so a restarted agent
//! knows what it last reported. The session re-reports all of them on each new
//! session and sends changes as they happen.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use lnswarm_common::{api::TaskStatus, ids::now_unix_ms};
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::state::{AgentState, StateError};
use crate::executor::StatusSink;

pub struct StatusBoard {
    state: AgentState,
    inner: Mutex<Board>,
    changed: Notify,
}

#[derive(Default)]
struct Board {
    statuses: HashMap<String, TaskStatus>,
    dirty: HashSet<String>,
}

impl StatusBoard {
    pub fn new(state: AgentState) -> Result<Self, StateError> {
        let statuses = state.statuses()?;
        Ok(StatusBoard {
            state,
            inner: Mutex::new(Board {
                statuses: statuses.into_iter().collect(),
                dirty: HashSet::new(),
            }),
            changed: Notify::new(),
        })
    }

    /// The last reported state of a task (0 = NEW when never reported).
    pub fn state_of(&self, task_id: &str) -> i32 {
        self.inner
            .lock()
            .expect("board lock")
            .statuses
            .get(task_id)
            .map(|s| s.state)
            .unwrap_or(0)
    }

    pub fn get(&self, task_id: &str) -> Option<TaskStatus> {
        self.inner
            .lock()
            .expect("board lock")
            .statuses
            .get(task_id)
            .cloned()
    }

    /// Every known status (for the first report of a new session).
    pub fn all(&self) -> Vec<(String, TaskStatus)> {
        let mut b = self.inner.lock().expect("board lock");
        b.dirty.clear();
        b.statuses
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Takes the statuses changed since the last call.
    pub fn take_dirty(&self) -> Vec<(String, TaskStatus)> {
        let mut b = self.inner.lock().expect("board lock");
        let dirty: Vec<String> = b.dirty.drain().collect();
        dirty
            .into_iter()
            .filter_map(|id| b.statuses.get(&id).map(|s| (id, s.clone())))
            .collect()
    }

    /// Puts statuses back after a failed send.
    pub fn mark_dirty(&self, ids: impl IntoIterator<Item = String>) {
        let mut b = self.inner.lock().expect("board lock");
        b.dirty.extend(ids);
        drop(b);
        self.changed.notify_one();
    }

    /// Waits for a change.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    pub fn forget(&self, task_id: &str) {
        let mut b = self.inner.lock().expect("board lock");
        b.statuses.remove(task_id);
        b.dirty.remove(task_id);
    }
}

impl StatusSink for StatusBoard {
    fn report(&self, task_id: &str, mut status: TaskStatus) {
        if status.timestamp_unix_ms == 0 {
            status.timestamp_unix_ms = now_unix_ms();
        }
        debug!(task = %task_id, state = status.state, message = %status.message, "task status");
        if let Err(e) = self.state.put_status(task_id, &status) {
            warn!(error = %e, task = %task_id, "could not persist a task status");
        }
        let mut b = self.inner.lock().expect("board lock");
        b.statuses.insert(task_id.to_string(), status);
        b.dirty.insert(task_id.to_string());
        drop(b);
        self.changed.notify_one();
    }

    fn record_process(&self, task_id: &str, pid: u32, started: u64) {
        if let Err(e) = self.state.record_process(task_id, pid, started) {
            warn!(error = %e, task = %task_id, "could not persist a task's pid");
        }
    }
}
