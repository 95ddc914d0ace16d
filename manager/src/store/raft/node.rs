//! The one task that owns raft-rs's `RawNode`: it ticks, steps incoming messages,
//! batches every proposal that arrived meanwhile into one Ready, and handles each
//! Ready in the documented order: send messages, install a snapshot, hand committed
//! entries to the apply task, append entries, persist the hard state, flush once,
//! send the messages that needed the flush, advance, then the light ready.
//!
//! Commands are applied by [`super::applier`], off this loop; raft learns the
//! applied index through `advance_apply_to`. Membership changes and snapshots are
//! applied here, after the apply task has caught up, because raft must see them in
//! order.
//!
//! A proposal is acknowledged when its entry is applied (matched by the id in the
//! entry's context). Losing leadership fails every pending proposal and read at once
//! with UNAVAILABLE instead of letting them wait for a commit that may never come.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use lnswarm_common::api::Manager;
use prost::Message as _;
use raft::{
    prelude::{ConfChangeType, ConfChangeV2, Entry},
    Config, RawNode, SnapshotStatus, StateRole,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::{
    applier::{self, Applier},
    apply::{self, Decoded},
    logger,
    storage::SledStorage,
    transport::Transport,
    Event, RaftConfig,
};
use crate::store::{keys, Applied, Leadership, StateMachine, StoreError};

/// This manager's view of the quorum, for status calls.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub raft_id: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub is_leader: bool,
    pub voters: Vec<u64>,
    /// Whether this manager is still a member (false once removed).
    pub member: bool,
}

/// A Ready that takes longer than this is logged (slow disk, huge batch).
const SLOW_READY: Duration = Duration::from_millis(100);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub struct Node {
    raw: RawNode<SledStorage>,
    raft_id: u64,
    manager_id: String,
    config: RaftConfig,
    sm: StateMachine,
    transport: Transport,
    pending: HashMap<u64, Reply<Applied>>,
    reads: HashMap<u64, Reply<u64>>,
    next_id: u64,
    status: Arc<Mutex<NodeStatus>>,
    applied_tx: Arc<watch::Sender<u64>>,
    applier: Applier,
    leadership_tx: watch::Sender<Leadership>,
    /// (is leader, term, leader id) last published.
    published: (bool, u64, u64),
    members_changed: bool,
    last_compaction_at: u64,
}

type Started = (
    Node,
    Arc<Mutex<NodeStatus>>,
    watch::Receiver<u64>,
    watch::Receiver<Leadership>,
);

impl Node {
    pub fn new(
        raft_id: u64,
        manager_id: String,
        config: RaftConfig,
        mut storage: SledStorage,
        sm: StateMachine,
        transport: Transport,
    ) -> Result<Started, super::RaftStartError> {
        let applied = sm.applied_index();
        storage.prepare_start(applied)?;
        let voters = storage.conf_state()?.voters;
        let cfg = Config {
            id: raft_id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        cfg.validate()?;
        let mut raw = RawNode::new(&cfg, storage, &logger::logger(raft_id))?;
        if voters == [raft_id] {
            // A lone voter need not wait out an election timeout.
            raw.campaign()?;
        }
        let status = Arc::new(Mutex::new(NodeStatus {
            raft_id,
            applied,
            voters: voters.clone(),
            member: true,
            ..Default::default()
        }));
        let (applied_tx, applied_rx) = watch::channel(applied);
        let applied_tx = Arc::new(applied_tx);
        let applier = Applier::start(sm.clone(), applied_tx.clone());
        let (leadership_tx, leadership_rx) = watch::channel(Leadership::default());
        let last_compaction_at = raw.store().snapshot_index();
        let node = Node {
            raw,
            raft_id,
            manager_id,
            config,
            sm,
            transport,
            pending: HashMap::new(),
            reads: HashMap::new(),
            next_id: rand::random::<u64>() >> 1,
            status: status.clone(),
            applied_tx,
            applier,
            leadership_tx,
            published: (false, 0, u64::MAX),
            members_changed: true,
            last_compaction_at,
        };
        Ok((node, status, applied_rx, leadership_rx))
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let span = info_span!("raft", manager = %self.manager_id, raft_id = %format!("{:x}", self.raft_id));
        async move {
            let mut ticker = tokio::time::interval(self.config.tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut gc = tokio::time::interval(Duration::from_secs(1));
            let mut buf = Vec::with_capacity(4096);
            loop {
                tokio::select! {
                    _ = ticker.tick() => { self.raw.tick(); }
                    _ = gc.tick() => {
                        // Callers that gave up (deadline) no longer need an answer.
                        self.pending.retain(|_, r| !r.is_closed());
                        self.reads.retain(|_, r| !r.is_closed());
                    }
                    n = events.recv_many(&mut buf, 4096) => {
                        if n == 0 {
                            return;
                        }
                        for ev in buf.drain(..) {
                            self.handle(ev);
                        }
                    }
                    applied = self.applier.changed() => match applied {
                        Ok(applied) => self.note_applied(applied),
                        Err(e) => {
                            error!(error = %e, "the apply task failed; the raft node stops");
                            self.fail_all("the raft node stopped after a storage failure");
                            return;
                        }
                    },
                }
                if let Err(e) = self.on_ready().await {
                    // Storage failed: stop, so every caller gets UNAVAILABLE rather
                    // than answers from a store that may have lost writes.
                    error!(error = %e, "raft storage failed; the raft node stops");
                    self.fail_all("the raft node stopped after a storage failure");
                    return;
                }
                self.publish();
            }
        }
        .instrument(span)
        .await
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    fn context(&mut self) -> (u64, Vec<u8>) {
        self.next_id = self.next_id.wrapping_add(1);
        let mut ctx = Vec::with_capacity(16);
        ctx.extend_from_slice(&self.raft_id.to_be_bytes());
        ctx.extend_from_slice(&self.next_id.to_be_bytes());
        (self.next_id, ctx)
    }

    fn not_leader(&self) -> StoreError {
        StoreError::Unavailable("this manager is not the leader".into())
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Propose { txn, reply } => {
                if !self.is_leader() {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                let (id, ctx) = self.context();
                match self.raw.propose(ctx, txn.encode_to_vec()) {
                    Ok(()) => {
                        self.pending.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(StoreError::Unavailable(format!(
                            "proposal dropped: {e}"
                        ))));
                    }
                }
            }
            Event::ConfChange { mut cc, txn, reply } => {
                if !self.is_leader() {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                if self.raw.raft.has_pending_conf() {
                    let _ = reply.send(Err(StoreError::Unavailable(
                        "another membership change is in progress; retry".into(),
                    )));
                    return;
                }
                let removes_me = cc.get_changes().iter().any(|c| {
                    c.get_change_type() == ConfChangeType::RemoveNode && c.node_id == self.raft_id
                });
                if removes_me {
                    // Hand leadership to the most up-to-date peer first; the caller
                    // retries against the new leader.
                    let best = self
                        .raw
                        .raft
                        .prs()
                        .iter()
                        .filter(|(id, _)| **id != self.raft_id)
                        .max_by_key(|(_, p)| p.matched)
                        .map(|(id, _)| *id);
                    if let Some(to) = best {
                        info!(to = %format!("{to:x}"), "transferring leadership before leaving");
                        self.raw.transfer_leader(to);
                    }
                    let _ = reply.send(Err(StoreError::Unavailable(
                        "the leader is being removed; leadership is moving, retry".into(),
                    )));
                    return;
                }
                cc.context = txn.encode_to_vec().into();
                let (id, ctx) = self.context();
                match self.raw.propose_conf_change(ctx, cc) {
                    Ok(()) => {
                        self.pending.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(StoreError::Unavailable(format!(
                            "membership change refused: {e}"
                        ))));
                    }
                }
            }
            Event::Raft(m) => {
                // What does not fit this log only a faulty peer sends, and raft-rs
                // would panic on it.
                if let Err(e) = super::admissible::fits(&self.raw.raft.raft_log, &m) {
                    warn!(from = %format!("{:x}", m.from), "dropped a raft message: {e}");
                    return;
                }
                if let Err(e) = self.raw.step(m) {
                    debug!(error = %e, "ignored a raft message");
                }
            }
            Event::ReadIndex { reply } => {
                let (id, ctx) = self.context();
                self.raw.read_index(ctx);
                self.reads.insert(id, reply);
            }
            Event::Unreachable(id) => self.raw.report_unreachable(id),
            Event::SnapshotDone(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
        }
    }

    fn own_id(&self, ctx: &[u8]) -> Option<u64> {
        if ctx.len() != 16 || ctx[..8] != self.raft_id.to_be_bytes() {
            return None;
        }
        Some(u64::from_be_bytes(ctx[8..].try_into().expect("8 bytes")))
    }

    async fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut ready = self.raw.ready();
        let n_committed = ready.committed_entries().len();
        let n_entries = ready.entries().len();
        // 1. Messages that need no durability (the leader's appends go out while it
        //    writes its own copy).
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        // 2. A snapshot from the leader replaces the state machine (once the apply
        //    task has written what it was given).
        let mut durable = false;
        if !ready.snapshot().is_empty() {
            self.applier.drain().await?;
            let snap = ready.snapshot().clone();
            info!(
                index = snap.get_metadata().index,
                "installing a snapshot from the leader"
            );
            self.raw.mut_store().apply_snapshot(&snap)?;
            crate::metrics::events()
                .snapshots
                .get_or_create(&crate::metrics::Kind { kind: "installed" })
                .inc();
            self.members_changed = true;
            self.set_voters(snap.get_metadata().get_conf_state().voters.clone());
            // Readers waiting for an index the snapshot covers must see it now, not
            // only after the next committed entry.
            self.applier.applied_inline(snap.get_metadata().index);
            self.applied_tx.send_replace(self.sm.applied_index());
            durable = true;
        }
        // 3. Entries committed earlier (already durable here) go to the apply task.
        self.apply_committed(ready.take_committed_entries()).await?;
        let applied_at = started.elapsed();
        // 4-5. New entries and the hard state.
        if !ready.entries().is_empty() {
            self.raw.mut_store().append(ready.entries())?;
            durable = true;
        }
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
            durable = true;
        }
        // One flush for everything this Ready wrote.
        let flush_started = std::time::Instant::now();
        if durable || ready.must_sync() {
            self.sm.flush().await?;
        }
        let flush = flush_started.elapsed();
        for rs in ready.take_read_states() {
            if let Some(id) = self.own_id(&rs.request_ctx) {
                if let Some(reply) = self.reads.remove(&id) {
                    let _ = reply.send(Ok(rs.index));
                }
            }
        }
        // 6. Messages that promise durability (votes, append responses).
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        // 7. Advance (applying is tracked separately) and handle the light ready.
        let mut light = self.raw.advance_append(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        self.transport.send(light.take_messages());
        let n_light = light.committed_entries().len();
        self.apply_committed(light.take_committed_entries()).await?;
        self.note_applied(self.sm.applied_index());
        let took = started.elapsed();
        if took > SLOW_READY {
            warn!(
                took_ms = took.as_millis() as u64,
                flush_ms = flush.as_millis() as u64,
                apply_ms = applied_at.as_millis() as u64,
                appended = n_entries,
                applied = n_committed + n_light,
                "slow raft ready"
            );
        }
        self.maybe_compact().await
    }

    /// Hands committed commands to the apply task; a membership change is applied
    /// here, in order, once the task has caught up.
    async fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut run: Vec<applier::Job> = Vec::new();
        for entry in entries {
            match apply::decode(&entry)? {
                Decoded::Command(txn) => {
                    let reply = self
                        .own_id(&entry.context)
                        .and_then(|id| self.pending.remove(&id));
                    run.push((entry.index, txn, reply));
                }
                Decoded::ConfChange(cc, txn) => {
                    self.applier.send(std::mem::take(&mut run))?;
                    self.applier.drain().await?;
                    let result = match self.apply_conf_change(entry.index, &cc, &txn) {
                        Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m)),
                        Err(e) => return Err(e),
                        ok => ok,
                    };
                    self.applier.applied_inline(entry.index);
                    self.applied_tx.send_replace(self.sm.applied_index());
                    self.ack(&entry, result);
                }
            }
        }
        self.applier.send(run)
    }

    /// Tells raft how far the state machine has applied (never backwards, never
    /// past what raft handed out as committed and persisted).
    fn note_applied(&mut self, applied: u64) {
        let log = &self.raw.raft.raft_log;
        let upto = applied.min(log.committed).min(log.persisted);
        if upto > log.applied {
            self.raw.advance_apply_to(upto);
        }
    }

    /// Answers the proposer of `entry`, if it was proposed here.
    fn ack(&mut self, entry: &Entry, result: Result<Applied, StoreError>) {
        if let Some(id) = self.own_id(&entry.context) {
            if let Some(reply) = self.pending.remove(&id) {
                let _ = reply.send(result);
            }
        }
    }

    fn apply_conf_change(
        &mut self,
        index: u64,
        cc: &ConfChangeV2,
        txn: &lnswarm_common::api::StoreTxn,
    ) -> Result<Applied, StoreError> {
        match self.raw.apply_conf_change(cc) {
            Ok(cs) => {
                info!(index, voters = ?cs.voters.iter().map(|v| format!("{v:x}")).collect::<Vec<_>>(), "membership changed");
                let applied = apply::apply_txn(&self.sm, index, txn, Some(&cs))?;
                self.members_changed = true;
                self.set_voters(cs.voters);
                Ok(applied)
            }
            Err(e) => {
                warn!(index, error = %e, "membership change refused");
                // The index is still consumed.
                apply::apply_txn(&self.sm, index, &Default::default(), None)?;
                Err(StoreError::Unavailable(format!(
                    "membership change refused: {e}"
                )))
            }
        }
    }

    fn set_voters(&mut self, voters: Vec<u64>) {
        let member = voters.contains(&self.raft_id);
        let mut status = self.status.lock().expect("status lock");
        if status.member && !member {
            warn!("this manager was removed from the cluster");
        }
        status.member = member;
        status.voters = voters;
    }

    /// Every `snapshot_interval` applied entries, compacts the log, keeping
    /// `log_tail` entries for followers that are a little behind; farther ones get
    /// a snapshot of the state machine.
    async fn maybe_compact(&mut self) -> Result<(), StoreError> {
        let applied = self.sm.applied_index();
        if applied < self.last_compaction_at + self.config.snapshot_interval {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // What the compacted entries produced must be durable before they go.
        self.sm.flush().await?;
        let flushed = started.elapsed();
        let to = applied.saturating_sub(self.config.log_tail);
        self.raw.mut_store().compact(to)?;
        self.last_compaction_at = applied;
        info!(
            applied,
            compacted_to = to,
            flush_ms = flushed.as_millis() as u64,
            took_ms = started.elapsed().as_millis() as u64,
            "compacted the raft log"
        );
        Ok(())
    }

    fn fail_all(&mut self, why: &str) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(StoreError::Unavailable(why.to_string())));
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(StoreError::Unavailable(why.to_string())));
        }
    }

    /// Updates the status and, when it changed, the leadership watch.
    fn publish(&mut self) {
        let is_leader = self.is_leader();
        let term = self.raw.raft.term;
        let leader = self.raw.raft.leader_id;
        {
            let mut s = self.status.lock().expect("status lock");
            s.term = term;
            s.commit = self.raw.raft.raft_log.committed;
            s.applied = self.sm.applied_index();
            s.leader_id = leader;
            s.is_leader = is_leader;
        }
        let now = (is_leader, term, leader);
        if now == self.published && !self.members_changed {
            return;
        }
        if self.published.0 && !is_leader {
            warn!(term, "lost leadership; failing pending proposals");
            self.fail_all("leadership lost; the write may or may not have been applied");
        }
        if now.2 != self.published.2 || now.0 != self.published.0 {
            info!(term, leader = %format!("{leader:x}"), is_leader, "leadership");
        }
        self.published = now;
        self.members_changed = false;
        let who = if leader == 0 {
            None
        } else {
            self.sm
                .scan(keys::MANAGERS)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.decode::<Manager>().ok())
                .find(|m| m.raft_id == leader)
        };
        self.leadership_tx.send_replace(Leadership {
            is_leader,
            term,
            leader_id: who.as_ref().map(|m| m.id.clone()),
            leader_addr: who.map(|m| m.addr),
        });
    }
}
