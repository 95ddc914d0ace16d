//! The cluster's state. Commands (`StoreTxn`: checks plus writes, applied atomically)
//! go through a proposer and are acknowledged only once applied and durable; reads
//! come from the local state machine. On a lone manager the proposer applies directly
//! ([`local`]); with a quorum, the raft driver replicates the command first.

pub mod keys;
mod local;
pub mod raft;
mod state_machine;
pub mod watch;

use lnswarm_common::api::StoreTxn;
use prost::Message;
use tonic::Status;

pub use state_machine::{Applied, StateMachine, TxnBuilder, Versioned, CHANGELOG_RETAIN};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("a store read did not finish: {0}")]
    Interrupted(String),
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Status::unavailable(m),
            other => Status::internal(other.to_string()),
        }
    }
}

#[derive(Clone)]
enum Proposer {
    Local(local::LocalProposer),
    Raft(raft::RaftHandle),
}

/// Who leads the quorum, as this manager last saw it. Leader-only services (the
/// dispatcher, orchestrator, placement, CA signer) start and stop on its changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leadership {
    pub is_leader: bool,
    pub term: u64,
    /// The leader's manager id and address, when known.
    pub leader_id: Option<String>,
    pub leader_addr: Option<String>,
}

/// Handle to the store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    sm: StateMachine,
    proposer: Proposer,
    leadership: tokio::sync::watch::Receiver<Leadership>,
}

impl Store {
    /// A store for a manager that is the whole cluster by itself.
    /// `me` is this manager's (id, address): a lone manager always leads.
    pub fn open_local(db: sled::Db, me: Option<(String, String)>) -> Result<Self, StoreError> {
        let sm = StateMachine::open(db)?;
        let (_, leadership) = tokio::sync::watch::channel(Leadership {
            is_leader: true,
            term: 1,
            leader_id: me.as_ref().map(|m| m.0.clone()),
            leader_addr: me.map(|m| m.1),
        });
        Ok(Store {
            proposer: Proposer::Local(local::LocalProposer::start(sm.clone())),
            sm,
            leadership,
        })
    }

    /// A store replicated by raft over `db` (bootstrapping a one-member log from a
    /// state `init` wrote, joining, or restarting from disk).
    pub fn open_raft(db: sled::Db, opts: raft::RaftOptions) -> Result<Self, raft::RaftStartError> {
        let sm = StateMachine::open(db)?;
        let handle = raft::RaftHandle::start(sm.clone(), opts)?;
        Ok(Store {
            leadership: handle.leadership(),
            proposer: Proposer::Raft(handle),
            sm,
        })
    }

    /// The raft node, when the store is replicated.
    pub fn raft(&self) -> Option<&raft::RaftHandle> {
        match &self.proposer {
            Proposer::Raft(h) => Some(h),
            Proposer::Local(_) => None,
        }
    }

    /// The current leadership and its changes.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.borrow().is_leader
    }

    /// The local state machine (reads, watches).
    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    /// Proposes a command and waits until it is applied.
    pub async fn propose(&self, txn: StoreTxn) -> Result<Applied, StoreError> {
        match &self.proposer {
            Proposer::Local(p) => p.propose(txn).await,
            Proposer::Raft(h) => h.propose(txn).await,
        }
    }

    /// Waits until local reads reflect every write acknowledged anywhere before this
    /// call (linearizable reads). Immediate on a lone manager.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        match &self.proposer {
            Proposer::Local(_) => Ok(()),
            Proposer::Raft(h) => h.read_barrier().await.map(|_| ()),
        }
    }

    /// Decodes the object at `key`.
    pub fn get<M: Message + Default>(&self, key: &str) -> Result<Option<(u64, M)>, StoreError> {
        self.sm
            .get(key)?
            .map(|v| Ok((v.version, v.decode::<M>()?)))
            .transpose()
    }

    /// Decodes every object under `prefix`.
    pub fn list<M: Message + Default>(&self, prefix: &str) -> Result<Vec<(u64, M)>, StoreError> {
        self.sm
            .scan(prefix)?
            .into_iter()
            .map(|(_, v)| Ok((v.version, v.decode::<M>()?)))
            .collect()
    }

    /// Runs `read` on the blocking pool. Reads of whole prefixes take milliseconds
    /// in a large cluster (10 000 agents), and on the gRPC thread they would stall
    /// every other connection, agents' heartbeats among them, for as long.
    pub async fn read_off_thread<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|e| StoreError::Interrupted(e.to_string()))?
    }
}

/// Test helpers shared by the store's unit tests.
#[cfg(test)]
pub(crate) mod test_db {
    /// Opens sled at `dir`, waiting for a dropped handle's flusher thread to release
    /// the file lock first (sled releases it asynchronously), so tests can "restart".
    pub fn open(dir: &std::path::Path) -> sled::Db {
        let mut tries = 0;
        loop {
            match sled::open(dir) {
                Ok(db) => return db,
                Err(_) if tries < 250 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("open {}: {e}", dir.display()),
            }
        }
    }
}
