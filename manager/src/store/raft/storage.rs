//! raft-rs's `Storage` over sled, in the same database as the state machine: log
//! entries (key = index, big endian), the hard state and the compaction point
//! (snapshot metadata) in their own trees; the conf state sits in the state
//! machine's meta tree so it changes in the same transaction as the applied index.
//!
//! Nothing here flushes: the Ready loop flushes once per Ready, before anything that
//! depends on durability is sent.

use protobuf::Message as _;
use raft::{
    prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata},
    Error as RaftError, GetEntriesContext, RaftState, Storage, StorageError,
};

use crate::store::{StateMachine, StoreError};

const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";
const RAFT_ID: &[u8] = b"raft_id";
/// Key of the conf state in the state machine's meta tree.
pub const CONF_STATE: &[u8] = b"raft_conf_state";

pub struct SledStorage {
    log: sled::Tree,
    meta: sled::Tree,
    sm: StateMachine,
    hard_state: HardState,
    /// Index and term of the last compacted entry (or installed snapshot).
    snap_index: u64,
    snap_term: u64,
    last: u64,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn raft_err(e: StoreError) -> RaftError {
    RaftError::Store(StorageError::Other(Box::new(e)))
}

impl SledStorage {
    pub fn open(sm: StateMachine) -> Result<Self, StoreError> {
        let db = sm.db().clone();
        let log = db.open_tree("raft_log")?;
        let meta = db.open_tree("raft_meta")?;
        let hard_state = match meta.get(HARD_STATE)? {
            Some(v) => HardState::parse_from_bytes(&v).map_err(corrupt)?,
            None => HardState::default(),
        };
        let (snap_index, snap_term) = match meta.get(SNAPSHOT_META)? {
            Some(v) => {
                let m = SnapshotMetadata::parse_from_bytes(&v).map_err(corrupt)?;
                (m.index, m.term)
            }
            None => (0, 0),
        };
        let last = match log.last()? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().map_err(corrupt)?),
            None => snap_index,
        };
        Ok(SledStorage {
            log,
            meta,
            sm,
            hard_state,
            snap_index,
            snap_term,
            last: last.max(snap_index),
        })
    }

    /// The raft id recorded for this manager, if any.
    pub fn raft_id(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta
            .get(RAFT_ID)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    pub fn set_raft_id(&mut self, id: u64) -> Result<(), StoreError> {
        self.meta.insert(RAFT_ID, &id.to_be_bytes())?;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default() && self.last == 0
    }

    /// Makes the state a lone `init` wrote (applied without raft) the start of a
    /// one-member raft log: a compaction point at the applied index, term 1.
    pub fn bootstrap(&mut self, raft_id: u64) -> Result<(), StoreError> {
        let applied = self.sm.applied_index();
        let mut cs = ConfState::default();
        cs.voters = vec![raft_id];
        self.sm
            .meta_put(CONF_STATE, &cs.write_to_bytes().map_err(corrupt)?)?;
        self.set_snapshot_meta(applied, 1)?;
        let mut hs = HardState::default();
        hs.term = 1;
        hs.commit = applied;
        self.set_hard_state(&hs)?;
        self.last = applied;
        self.set_raft_id(raft_id)
    }

    pub fn conf_state(&self) -> Result<ConfState, StoreError> {
        match self.sm.meta_get(CONF_STATE)? {
            Some(v) => ConfState::parse_from_bytes(&v).map_err(corrupt),
            None => Ok(ConfState::default()),
        }
    }

    pub fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError> {
        self.sm
            .meta_put(CONF_STATE, &cs.write_to_bytes().map_err(corrupt)?)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.meta
            .insert(HARD_STATE, hs.write_to_bytes().map_err(corrupt)?)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    pub fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    fn set_snapshot_meta(&mut self, index: u64, term: u64) -> Result<(), StoreError> {
        let mut m = SnapshotMetadata::default();
        m.index = index;
        m.term = term;
        self.meta
            .insert(SNAPSHOT_META, m.write_to_bytes().map_err(corrupt)?)?;
        self.snap_index = index;
        self.snap_term = term;
        Ok(())
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snap_index
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    /// Appends entries, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let new_last = entries.last().expect("non-empty").index;
        let mut batch = sled::Batch::default();
        for e in entries {
            let mut v = Vec::with_capacity(8 + e.compute_size() as usize);
            v.extend_from_slice(&e.term.to_be_bytes());
            e.write_to_vec(&mut v).map_err(corrupt)?;
            batch.insert(&e.index.to_be_bytes(), v);
        }
        // Raft may overwrite a suffix written under an older leader.
        for index in (new_last + 1)..=self.last.max(first.index) {
            batch.remove(&index.to_be_bytes());
        }
        self.log.apply_batch(batch)?;
        self.last = new_last;
        Ok(())
    }

    /// Installs a snapshot received from the leader: replaces the state machine and
    /// drops the whole log.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        self.sm.restore(&snap.data)?;
        self.set_conf_state(meta.get_conf_state())?;
        self.log.clear()?;
        self.set_snapshot_meta(meta.index, meta.term)?;
        self.last = meta.index;
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.set_hard_state(&hs)
    }

    /// Discards entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        if index <= self.snap_index || index > self.sm.applied_index() {
            return Ok(());
        }
        let term = self.term(index).map_err(corrupt)?;
        self.set_snapshot_meta(index, term)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index.to_be_bytes()) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    fn read_entry(&self, index: u64) -> Result<Option<Entry>, StoreError> {
        match self.log.get(index.to_be_bytes())? {
            Some(v) => Ok(Some(Entry::parse_from_bytes(&v[8..]).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Entries in `[low, high)`, for recovery.
    pub fn entries_in(&self, low: u64, high: u64) -> Result<Vec<Entry>, StoreError> {
        (low..high)
            .map(|i| {
                self.read_entry(i)?
                    .ok_or_else(|| corrupt(format!("missing log entry {i}")))
            })
            .collect()
    }
}

impl Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state().map_err(raft_err)?,
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index {
            return Err(RaftError::Store(StorageError::Compacted));
        }
        if high > self.last + 1 {
            return Err(RaftError::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        for item in self.log.range(low.to_be_bytes()..high.to_be_bytes()) {
            let (_, v) = item.map_err(|e| raft_err(e.into()))?;
            size += (v.len() - 8) as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(Entry::parse_from_bytes(&v[8..]).map_err(|e| raft_err(corrupt(e)))?);
        }
        if out.is_empty() && low < high {
            return Err(RaftError::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index {
            return Ok(self.snap_term);
        }
        if idx < self.snap_index {
            return Err(RaftError::Store(StorageError::Compacted));
        }
        if idx > self.last {
            return Err(RaftError::Store(StorageError::Unavailable));
        }
        match self.log.get(idx.to_be_bytes()) {
            Ok(Some(v)) => Ok(u64::from_be_bytes(v[..8].try_into().expect("8 bytes"))),
            Ok(None) => Err(RaftError::Store(StorageError::Unavailable)),
            Err(e) => Err(raft_err(e.into())),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last)
    }

    /// The state machine as it is now (applied index ≥ anything raft asks for, since
    /// compaction never passes the applied index).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = self.sm.applied_index();
        if applied < request_index {
            return Err(RaftError::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        snap.data = self.sm.snapshot().map_err(raft_err)?.into();
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = self.term(applied)?;
        meta.set_conf_state(self.conf_state().map_err(raft_err)?);
        Ok(snap)
    }
}
