//! The replicated store: one task drives raft-rs's `RawNode` ([`node`]) over sled
//! storage ([`storage`]); raft messages and snapshots travel between managers over
//! gRPC with mTLS ([`transport`], [`service`]); membership changes and the operator's
//! view of the quorum live in [`membership`].
//!
//! [`RaftHandle`] is what the rest of the manager sees: propose a command (forwarded
//! to the leader from a follower), wait for a linearizable read point, and watch who
//! leads.

// raft-rs's protobuf types are built field by field from `default()` (as raft-rs
// itself does); struct literals would have to spell out protobuf's bookkeeping.
#![allow(clippy::field_reassign_with_default)]

mod admissible;
mod applier;
mod apply;
mod logger;
pub mod membership;
mod node;
pub mod service;
mod snapshot_stream;
mod storage;
mod transport;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use lnswarm_common::{
    api::{raft_client::RaftClient, ForwardProposalRequest, RaftMember, StoreTxn},
    tls::ClientTls,
};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::ConfChangeV2;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;
use tracing::info;

use super::{Applied, Leadership, StateMachine, StoreError};

pub use node::NodeStatus;

/// Tuning of the raft node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// One raft tick.
    pub tick: Duration,
    /// Ticks without a leader before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Compact the log every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept behind the compaction point for slow followers.
    pub log_tail: u64,
    /// How long a proposal or read may wait before failing with UNAVAILABLE.
    pub request_timeout: Duration,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_interval: 10_000,
            log_tail: 1_000,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// How a manager's raft node starts.
pub struct RaftOptions {
    pub manager_id: String,
    pub addr: String,
    /// This manager's client credential for manager-to-manager calls.
    pub tls: ClientTls,
    pub config: RaftConfig,
    /// The raft id this manager was given when it joined (new data directory only).
    pub join_as: Option<u64>,
    /// Members to dial before the store knows them (from the join answer).
    pub seeds: Vec<RaftMember>,
    /// Keep the state but make this manager the only member.
    pub force_new_cluster: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("this data directory has no raft id; was it made by init or join?")]
    NoRaftId,
}

/// A command sent to the node task.
pub(crate) enum Event {
    Propose {
        txn: StoreTxn,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
    ConfChange {
        cc: ConfChangeV2,
        txn: StoreTxn,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
    Raft(raft::prelude::Message),
    ReadIndex {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Unreachable(u64),
    SnapshotDone(u64, bool),
}

/// Handle to the raft node, cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

struct Inner {
    raft_id: u64,
    manager_id: String,
    events: mpsc::Sender<Event>,
    status: Arc<Mutex<NodeStatus>>,
    applied: watch::Receiver<u64>,
    leadership: watch::Receiver<Leadership>,
    transport: transport::Transport,
    sm: StateMachine,
    timeout: Duration,
}

impl RaftHandle {
    /// Opens (or bootstraps, or joins) the raft node over `sm`'s database and starts
    /// its task.
    pub fn start(sm: StateMachine, opts: RaftOptions) -> Result<Self, RaftStartError> {
        let mut storage = storage::SledStorage::open(sm.clone())?;
        let raft_id = match (storage.raft_id()?, opts.join_as) {
            (Some(id), _) => id,
            (None, Some(id)) => {
                storage.set_raft_id(id)?;
                id
            }
            // A data directory `init` wrote through the lone proposer.
            (None, None) if storage.is_empty() && sm.applied_index() > 0 => {
                storage.bootstrap(1)?;
                info!(raft_id = 1, "bootstrapped a one-member raft log");
                1
            }
            (None, None) => return Err(RaftStartError::NoRaftId),
        };
        if opts.force_new_cluster {
            apply::force_new_cluster(&sm, &mut storage, raft_id)?;
        }
        let (events_tx, events_rx) = mpsc::channel(65_536);
        let transport =
            transport::Transport::new(raft_id, opts.tls, sm.clone(), opts.seeds, events_tx.clone());
        let (node, status, applied, leadership) = node::Node::new(
            raft_id,
            opts.manager_id.clone(),
            opts.config.clone(),
            storage,
            sm.clone(),
            transport.clone(),
        )?;
        tokio::spawn(node.run(events_rx));
        let handle = RaftHandle {
            inner: Arc::new(Inner {
                raft_id,
                manager_id: opts.manager_id,
                events: events_tx,
                status,
                applied,
                leadership,
                transport,
                sm,
                timeout: opts.config.request_timeout,
            }),
        };
        if opts.force_new_cluster {
            let h = handle.clone();
            tokio::spawn(async move { membership::forget_others(&h).await });
        }
        Ok(handle)
    }

    pub fn raft_id(&self) -> u64 {
        self.inner.raft_id
    }

    pub fn manager_id(&self) -> &str {
        &self.inner.manager_id
    }

    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.clone()
    }

    pub fn status(&self) -> NodeStatus {
        self.inner.status.lock().expect("status lock").clone()
    }

    pub(crate) fn state(&self) -> &StateMachine {
        &self.inner.sm
    }

    pub(crate) fn client(&self, raft_id: u64) -> Option<RaftClient<Channel>> {
        self.inner.transport.client(raft_id)
    }

    pub(crate) async fn send(&self, ev: Event) -> Result<(), StoreError> {
        self.inner
            .events
            .send(ev)
            .await
            .map_err(|_| StoreError::Unavailable("the raft node stopped".into()))
    }

    /// Proposes through this manager's raft node; fails unless it leads.
    pub async fn propose_here(&self, txn: StoreTxn) -> Result<Applied, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Propose { txn, reply }).await?;
        self.await_reply(rx).await
    }

    /// Proposes through this manager's raft node only (never forwarded) and waits
    /// until it is applied here; fails unless this manager leads.
    pub async fn propose_while_leading(&self, txn: StoreTxn) -> Result<Applied, StoreError> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let applied = self.propose_here(txn).await?;
        self.wait_applied(applied.index(), deadline).await?;
        Ok(applied)
    }

    /// Proposes a membership change (with its store writes) through this manager's
    /// raft node; fails unless it leads.
    pub async fn conf_change_here(
        &self,
        cc: ConfChangeV2,
        txn: StoreTxn,
    ) -> Result<Applied, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::ConfChange { cc, txn, reply }).await?;
        self.await_reply(rx).await
    }

    async fn await_reply<T>(
        &self,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::Unavailable("the raft node stopped".into())),
            Err(_) => Err(StoreError::Unavailable(
                "no quorum: the write was not committed in time".into(),
            )),
        }
    }

    /// Waits (bounded) until some leader is known; returns its raft id.
    async fn leader(&self, deadline: tokio::time::Instant) -> Result<u64, StoreError> {
        let mut rx = self.inner.leadership.clone();
        loop {
            let id = self.status().leader_id;
            if id != 0 {
                return Ok(id);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(StoreError::Unavailable(
                    "no leader: the manager quorum is unavailable".into(),
                ));
            }
        }
    }

    /// Proposes on the leader, wherever it is, and waits until this manager has
    /// applied the result too (so a read here sees it).
    pub async fn propose(&self, txn: StoreTxn) -> Result<Applied, StoreError> {
        self.submit(txn, None).await
    }

    /// Proposes a membership change on the leader, wherever it is.
    pub async fn conf_change(
        &self,
        cc: ConfChangeV2,
        txn: StoreTxn,
    ) -> Result<Applied, StoreError> {
        self.submit(txn, Some(cc)).await
    }

    async fn submit(&self, txn: StoreTxn, cc: Option<ConfChangeV2>) -> Result<Applied, StoreError> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let leader = self.leader(deadline).await?;
        let applied = if leader == self.inner.raft_id {
            match cc {
                Some(cc) => self.conf_change_here(cc, txn).await?,
                None => self.propose_here(txn).await?,
            }
        } else {
            let mut client = self.client(leader).ok_or_else(|| {
                StoreError::Unavailable(format!("leader {leader:x} has no known address"))
            })?;
            let conf_change = match cc {
                Some(cc) => cc
                    .write_to_bytes()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                None => Vec::new(),
            };
            let mut req = tonic::Request::new(ForwardProposalRequest {
                command: txn.encode_to_vec(),
                origin: format!("swarm-manager/{}", self.inner.manager_id),
                conf_change,
            });
            req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let resp = tokio::time::timeout_at(deadline, client.forward_proposal(req))
                .await
                .map_err(|_| StoreError::Unavailable("the leader did not answer in time".into()))?
                .map_err(|s| {
                    StoreError::Unavailable(format!(
                        "the leader refused the write: {}",
                        s.message()
                    ))
                })?
                .into_inner();
            if resp.check_failed {
                Applied::CheckFailed(resp.index)
            } else {
                Applied::Committed(resp.index)
            }
        };
        self.wait_applied(applied.index(), deadline).await?;
        Ok(applied)
    }

    /// Waits until the local state machine has applied `index`.
    async fn wait_applied(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), StoreError> {
        let mut rx = self.inner.applied.clone();
        let reached = tokio::time::timeout_at(deadline, rx.wait_for(|a| *a >= index))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        match reached {
            true => Ok(()),
            false => Err(StoreError::Unavailable(
                "this manager is behind the leader".into(),
            )),
        }
    }

    /// Linearizable read point: asks the leader (through raft's ReadIndex) for its
    /// commit index and waits until this manager has applied it.
    pub async fn read_barrier(&self) -> Result<u64, StoreError> {
        if !self.status().member {
            return Err(StoreError::Unavailable(
                "this manager was removed from the cluster; ask another manager".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        // raft-rs drops a read request when no leader is known; wait for one first.
        self.leader(deadline).await?;
        let (reply, rx) = oneshot::channel();
        self.send(Event::ReadIndex { reply }).await?;
        let index = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(StoreError::Unavailable("the raft node stopped".into())),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "no quorum: could not confirm a read point in time".into(),
                ))
            }
        };
        self.wait_applied(index, deadline).await?;
        Ok(index)
    }
}
