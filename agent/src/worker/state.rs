//! The agent's own state in sled under `D/state`: the tasks assigned to it, the last
//! status of each, and the pid of each running child. Secrets are never written here.

use lnswarm_common::api::{Task, TaskStatus};
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("agent state: {0}")]
    Sled(#[from] sled::Error),
    #[error("agent state is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct AgentState {
    db: sled::Db,
    tasks: sled::Tree,
    statuses: sled::Tree,
    procs: sled::Tree,
}

fn decode<M: Message + Default>(v: &[u8]) -> Result<M, StateError> {
    M::decode(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

impl AgentState {
    pub fn open(path: &std::path::Path) -> Result<Self, StateError> {
        let db = sled::open(path)?;
        Ok(AgentState {
            tasks: db.open_tree("tasks")?,
            statuses: db.open_tree("statuses")?,
            procs: db.open_tree("procs")?,
            db,
        })
    }

    pub fn tasks(&self) -> Result<Vec<Task>, StateError> {
        self.tasks.iter().map(|r| decode(&r?.1)).collect()
    }

    pub fn put_task(&self, task: &Task) -> Result<(), StateError> {
        self.tasks
            .insert(task.id.as_bytes(), task.encode_to_vec())?;
        Ok(())
    }

    pub fn forget_task(&self, task_id: &str) -> Result<(), StateError> {
        self.tasks.remove(task_id.as_bytes())?;
        self.statuses.remove(task_id.as_bytes())?;
        self.procs.remove(task_id.as_bytes())?;
        Ok(())
    }

    pub fn statuses(&self) -> Result<Vec<(String, TaskStatus)>, StateError> {
        self.statuses
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((String::from_utf8_lossy(&k).into_owned(), decode(&v)?))
            })
            .collect()
    }

    pub fn put_status(&self, task_id: &str, status: &TaskStatus) -> Result<(), StateError> {
        self.statuses
            .insert(task_id.as_bytes(), status.encode_to_vec())?;
        Ok(())
    }

    /// Records a child (pid 0 clears it); flushed at once, since it is what a
    /// restarted agent relies on to find the child.
    pub fn record_process(&self, task_id: &str, pid: u32, started: u64) -> Result<(), StateError> {
        if pid == 0 {
            self.procs.remove(task_id.as_bytes())?;
        } else {
            let mut v = pid.to_be_bytes().to_vec();
            v.extend_from_slice(&started.to_be_bytes());
            self.procs.insert(task_id.as_bytes(), v)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// (task id, pid, start time) of every recorded child.
    pub fn processes(&self) -> Result<Vec<(String, u32, u64)>, StateError> {
        self.procs
            .iter()
            .map(|r| {
                let (k, v) = r?;
                if v.len() != 12 {
                    return Err(StateError::Corrupt("process record".into()));
                }
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    u32::from_be_bytes(v[..4].try_into().expect("4 bytes")),
                    u64::from_be_bytes(v[4..].try_into().expect("8 bytes")),
                ))
            })
            .collect()
    }
}
