//! The cluster's state. Commands (`StoreTxn`: checks plus writes, applied atomically)
//! go through a proposer and are acknowledged only once applied and durable; reads
//! come from the local state machine. On a lone manager the proposer applies directly
//! ([`local`]); with a quorum, the raft driver replicates the command first.

pub mod at_rest;
mod index;
pub mod keys;
mod local;
pub mod raft;
pub mod secrets;
mod state_machine;
pub mod watch;

use std::sync::{atomic::Ordering, Arc};

use lnswarm_common::api::StoreTxn;
use prost::Message;

pub use state_machine::{
    decode_snapshot, Applied, StateMachine, TxnBuilder, Versioned, CHANGELOG_RETAIN,
};

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
    #[error("{0} changed concurrently {UPDATE_ATTEMPTS} times in a row; retry")]
    Contended(String),
}

/// How many times [`Store::update`] tries before giving up with
/// [`StoreError::Contended`].
pub const UPDATE_ATTEMPTS: usize = 8;

/// What one attempt of [`Store::update`] wants to do.
pub enum Attempt<T> {
    /// Propose this transaction (whose checks guard what the attempt read); on
    /// commit, `update` returns the value.
    Propose(StoreTxn, T),
    /// Nothing needs writing.
    Done(T),
}

fn no_data_key() -> StoreError {
    StoreError::Unavailable("this manager does not hold the cluster's data key yet".into())
}

impl DataKeySlot {
    fn holding(key: Option<at_rest::DataKey>) -> Arc<Self> {
        Arc::new(DataKeySlot {
            key: std::sync::RwLock::new(key),
            adopted: Default::default(),
        })
    }
}

#[derive(Clone)]
enum Proposer {
    Local(local::LocalProposer),
    Raft(raft::RaftHandle),
    /// Leader-only work's proposals ([`Store::leader_only`]): on this manager's
    /// raft node only, never forwarded to another leader.
    RaftHere(raft::RaftHandle),
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
    keys: Arc<DataKeySlot>,
}

/// The cluster's data key as this manager holds it (see [`at_rest`]).
#[derive(Default)]
struct DataKeySlot {
    key: std::sync::RwLock<Option<at_rest::DataKey>>,
    /// Set once the cluster object names this key: only then does this manager
    /// seal with it (a key the cluster has not adopted would make values other
    /// managers cannot read).
    adopted: std::sync::atomic::AtomicBool,
}

impl Store {
    /// A store for a manager that is the whole cluster by itself.
    /// `me` is this manager's (id, address): a lone manager always leads.
    pub fn open_local(
        db: sled::Db,
        me: Option<(String, String)>,
        data_key: Option<at_rest::DataKey>,
    ) -> Result<Self, StoreError> {
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
            keys: DataKeySlot::holding(data_key),
        })
    }

    /// A lone manager's store whose leadership the caller drives (tests of the
    /// leader lifecycle).
    #[cfg(test)]
    pub fn open_local_led_by(
        db: sled::Db,
        data_key: Option<at_rest::DataKey>,
        leadership: tokio::sync::watch::Receiver<Leadership>,
    ) -> Result<Self, StoreError> {
        let sm = StateMachine::open(db)?;
        Ok(Store {
            proposer: Proposer::Local(local::LocalProposer::start(sm.clone())),
            sm,
            leadership,
            keys: DataKeySlot::holding(data_key),
        })
    }

    /// A store replicated by raft over `db` (bootstrapping a one-member log from a
    /// state `init` wrote, joining, or restarting from disk).
    pub fn open_raft(
        db: sled::Db,
        opts: raft::RaftOptions,
        data_key: Option<at_rest::DataKey>,
    ) -> Result<Self, raft::RaftStartError> {
        let sm = StateMachine::open(db)?;
        let handle = raft::RaftHandle::start(sm.clone(), opts)?;
        Ok(Store {
            leadership: handle.leadership(),
            proposer: Proposer::Raft(handle),
            sm,
            keys: DataKeySlot::holding(data_key),
        })
    }

    /// The data key this manager holds, if any.
    pub fn data_key(&self) -> Option<at_rest::DataKey> {
        self.keys.key.read().expect("data key lock").clone()
    }

    /// Takes `key` as this manager's data key (fetched from a peer, or made for a
    /// store from before data keys).
    pub fn set_data_key(&self, key: at_rest::DataKey) {
        *self.keys.key.write().expect("data key lock") = Some(key);
        self.keys.adopted.store(false, Ordering::Release);
    }

    /// The data key, once the cluster has adopted it.
    fn adopted_key(&self) -> Result<at_rest::DataKey, StoreError> {
        let key = self.data_key().ok_or_else(no_data_key)?;
        if self.keys.adopted.load(Ordering::Acquire) {
            return Ok(key);
        }
        let adopted = self
            .get::<lnswarm_common::api::ClusterRecord>(keys::CLUSTER)?
            .is_some_and(|(_, c)| c.data_key_id == key.id());
        if !adopted {
            return Err(no_data_key());
        }
        self.keys.adopted.store(true, Ordering::Release);
        Ok(key)
    }

    /// `plaintext` sealed for the store key `key` (see [`at_rest`]).
    pub fn seal(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.adopted_key()?.seal(key, plaintext))
    }

    /// Seals with this manager's key whether or not the cluster names it yet: only
    /// for the write that makes the cluster adopt it (init, migration).
    pub fn seal_for_adoption(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .data_key()
            .ok_or_else(no_data_key)?
            .seal(key, plaintext))
    }

    /// The plaintext of a value stored for `key`, sealed or (from before sealing)
    /// in the clear.
    pub fn open_sealed(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        if !at_rest::is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        self.data_key()
            .ok_or_else(no_data_key)?
            .open(key, stored)
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
    }

    /// The raft node, when the store is replicated.
    pub fn raft(&self) -> Option<&raft::RaftHandle> {
        match &self.proposer {
            Proposer::Raft(h) | Proposer::RaftHere(h) => Some(h),
            Proposer::Local(_) => None,
        }
    }

    /// The same store for leader-only work (dispatcher, orchestrator, sweepers,
    /// webhook deliverer): its proposals go through this manager's raft node only,
    /// so they commit only while it leads, in its own term. A deposed leader's
    /// last writes (a dispatcher just thawed from a pause marking every agent DOWN
    /// on its stale timers) must die with its term: forwarded to the new leader,
    /// they would land there and fail over nodes whose agents are alive.
    pub fn leader_only(&self) -> Store {
        let mut s = self.clone();
        if let Proposer::Raft(h) = &self.proposer {
            s.proposer = Proposer::RaftHere(h.clone());
        }
        s
    }

    /// The current leadership and its changes.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.borrow().is_leader
    }

    /// Whether this manager can serve what needs the quorum: it knows a leader (a
    /// store without raft is its own).
    pub fn knows_leader(&self) -> bool {
        self.raft().is_none() || self.leadership.borrow().leader_id.is_some()
    }

    /// The local state machine (reads, watches).
    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    /// Proposes a command and waits until it is applied.
    pub async fn propose(&self, txn: StoreTxn) -> Result<Applied, StoreError> {
        let started = std::time::Instant::now();
        let result = match &self.proposer {
            Proposer::Local(p) => p.propose(txn).await,
            Proposer::Raft(h) => h.propose(txn).await,
            Proposer::RaftHere(h) => h.propose_while_leading(txn).await,
        };
        let outcome = match &result {
            Ok(Applied::Committed(_)) => "committed",
            Ok(Applied::CheckFailed(_)) => "check_failed",
            Err(_) => "failed",
        };
        let events = crate::metrics::events();
        crate::metrics::record(
            &events.proposals,
            &events.proposal_seconds,
            outcome,
            started,
        );
        result
    }

    /// Read, change, propose under version checks, and retry on a failed check, at
    /// most [`UPDATE_ATTEMPTS`] times. `what` names the object in the error. Returns
    /// the attempt's value and the index it committed at (0 when nothing was
    /// written).
    pub async fn update<T, E: From<StoreError>>(
        &self,
        what: &str,
        mut attempt: impl FnMut(&Store) -> Result<Attempt<T>, E>,
    ) -> Result<(T, u64), E> {
        for _ in 0..UPDATE_ATTEMPTS {
            match attempt(self)? {
                Attempt::Done(v) => return Ok((v, 0)),
                Attempt::Propose(txn, v) => match self.propose(txn).await? {
                    Applied::Committed(index) => return Ok((v, index)),
                    Applied::CheckFailed(_) => continue,
                },
            }
        }
        Err(StoreError::Contended(what.to_string()).into())
    }

    /// Waits until local reads reflect every write acknowledged anywhere before this
    /// call (linearizable reads). Immediate on a lone manager.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        match &self.proposer {
            Proposer::Local(_) => Ok(()),
            Proposer::Raft(h) | Proposer::RaftHere(h) => h.read_barrier().await.map(|_| ()),
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

    /// Deletes, in one transaction, every object under `prefix` that `expired` picks
    /// or that does not decode; returns how many. For the leader's sweepers of
    /// records that outlive their use (consumed challenges, pairing requests).
    pub async fn delete_expired<M: Message + Default>(
        &self,
        prefix: &str,
        expired: impl Fn(&M) -> bool,
    ) -> Result<usize, StoreError> {
        let keys: Vec<String> = self
            .sm
            .scan(prefix)?
            .into_iter()
            .filter(|(_, v)| v.decode::<M>().map_or(true, |m| expired(&m)))
            .map(|(k, _)| k)
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let mut txn = TxnBuilder::new();
        for k in &keys {
            txn = txn.delete_tagged(k, Vec::<String>::new());
        }
        self.propose(txn.build()).await?;
        Ok(keys.len())
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
    /// A lone manager's store whose cluster record names its data key, so that
    /// sealing works (the cluster has adopted the key).
    pub async fn sealing_store() -> (tempfile::TempDir, super::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open_local(
            open(dir.path()),
            None,
            Some(super::at_rest::DataKey::generate()),
        )
        .unwrap();
        let record = lnswarm_common::api::ClusterRecord {
            data_key_id: store.data_key().unwrap().id(),
            ..Default::default()
        };
        store
            .propose(
                super::TxnBuilder::new()
                    .put(super::keys::CLUSTER, &record)
                    .build(),
            )
            .await
            .unwrap();
        (dir, store)
    }

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
