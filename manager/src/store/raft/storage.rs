//! raft-rs's `Storage` over sled, in the same database as the state machine: log
//! entries, the hard state and the compaction point (snapshot metadata); the conf
//! state sits with the state machine's meta keys so it changes in the same batch as
//! the applied index.
//!
//! Entries live in generation trees of [`GEN_SPAN`] consecutive indexes (key = index,
//! big endian), so compaction drops whole trees instead of deleting entries one by
//! one inside the raft loop. Terms of the live log are kept in memory: raft asks for
//! them on every append and vote.
//!
//! Nothing here flushes: the Ready loop flushes once per Ready, before anything that
//! depends on durability is sent.

use std::collections::{BTreeMap, VecDeque};

use protobuf::Message as _;
use raft::{
    prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata},
    Error as RaftError, GetEntriesContext, RaftState, Storage, StorageError,
};

use crate::store::{StateMachine, StoreError};

const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";
const RAFT_ID: &[u8] = b"raft_id";
/// Entries per generation tree.
const GEN_SPAN: u64 = 8192;
const GEN_TREE_PREFIX: &str = "raft_log_";

fn gen_of(index: u64) -> u64 {
    index / GEN_SPAN
}

fn gen_tree_name(gen: u64) -> String {
    format!("{GEN_TREE_PREFIX}{gen:016x}")
}
/// Key of the conf state in the state machine's meta tree.
pub const CONF_STATE: &[u8] = b"raft_conf_state";

pub struct SledStorage {
    db: sled::Db,
    /// Generation → its tree (see [`GEN_SPAN`]).
    gens: BTreeMap<u64, sled::Tree>,
    /// Terms of entries `snap_index + 1 ..= last`.
    terms: VecDeque<u64>,
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

/// The term stored in front of an encoded entry.
fn entry_term(raw: &[u8]) -> Result<u64, StoreError> {
    raw.get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| corrupt("short raft log entry"))
}

fn raft_err(e: StoreError) -> RaftError {
    RaftError::Store(StorageError::Other(Box::new(e)))
}

impl SledStorage {
    pub fn open(sm: StateMachine) -> Result<Self, StoreError> {
        let db = sm.db().clone();
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
        let mut gens = BTreeMap::new();
        for name in db.tree_names() {
            let Some(gen) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix(GEN_TREE_PREFIX))
                .and_then(|g| u64::from_str_radix(g, 16).ok())
            else {
                continue;
            };
            gens.insert(gen, db.open_tree(&name)?);
        }
        let mut storage = SledStorage {
            db,
            gens,
            terms: VecDeque::new(),
            meta,
            sm,
            hard_state,
            snap_index,
            snap_term,
            last: snap_index,
        };
        storage.load_terms()?;
        Ok(storage)
    }

    /// Reads the live log's terms into memory. The log ends at the first missing
    /// index or falling term: what an append cut short by a crash left behind (never
    /// flushed, so never acknowledged) is dropped.
    fn load_terms(&mut self) -> Result<(), StoreError> {
        let mut prev = self.snap_term;
        let mut index = self.snap_index + 1;
        'gens: for (_, tree) in self.gens.range(gen_of(index)..) {
            for item in tree.range(index.to_be_bytes()..) {
                let (k, v) = item?;
                let at = u64::from_be_bytes(k.as_ref().try_into().map_err(corrupt)?);
                let term = entry_term(&v)?;
                if at != index || term < prev {
                    break 'gens;
                }
                self.terms.push_back(term);
                prev = term;
                index += 1;
            }
        }
        self.last = index - 1;
        // Anything after the end is debris; remove it so a later append cannot
        // leave it looking like part of the log.
        let debris: Vec<u64> = self.gens.range(gen_of(index)..).map(|(g, _)| *g).collect();
        for gen in debris {
            let tree = &self.gens[&gen];
            let mut batch = sled::Batch::default();
            for item in tree.range(index.to_be_bytes()..) {
                batch.remove(item?.0);
            }
            tree.apply_batch(batch)?;
        }
        Ok(())
    }

    fn gen_tree(&mut self, gen: u64) -> Result<&sled::Tree, StoreError> {
        if !self.gens.contains_key(&gen) {
            let tree = self.db.open_tree(gen_tree_name(gen))?;
            self.gens.insert(gen, tree);
        }
        Ok(&self.gens[&gen])
    }

    /// Drops every generation tree whose entries are all at or below `index`.
    fn drop_gens_through(&mut self, index: u64) -> Result<(), StoreError> {
        let done: Vec<u64> = self
            .gens
            .keys()
            .copied()
            .filter(|g| (g + 1) * GEN_SPAN - 1 <= index)
            .collect();
        for gen in done {
            self.gens.remove(&gen);
            self.db.drop_tree(gen_tree_name(gen))?;
        }
        Ok(())
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

    /// Appends entries, replacing any conflicting suffix (in index order, so an
    /// append cut short leaves a log that [`load_terms`](Self::load_terms) can end
    /// cleanly).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.snap_index {
            return Err(corrupt(format!(
                "append at {} is at or below the compaction point {}",
                first.index, self.snap_index
            )));
        }
        let new_last = entries.last().expect("non-empty").index;
        let old_last = self.last;
        let mut batches: BTreeMap<u64, sled::Batch> = BTreeMap::new();
        for e in entries {
            let mut v = Vec::with_capacity(8 + e.compute_size() as usize);
            v.extend_from_slice(&e.term.to_be_bytes());
            e.write_to_vec(&mut v).map_err(corrupt)?;
            batches
                .entry(gen_of(e.index))
                .or_default()
                .insert(&e.index.to_be_bytes(), v);
        }
        // Raft may overwrite a suffix written under an older leader.
        for index in (new_last + 1)..=old_last {
            batches
                .entry(gen_of(index))
                .or_default()
                .remove(&index.to_be_bytes());
        }
        for (gen, batch) in batches {
            self.gen_tree(gen)?.apply_batch(batch)?;
        }
        self.terms
            .truncate((first.index - self.snap_index - 1) as usize);
        self.terms.extend(entries.iter().map(|e| e.term));
        self.last = new_last;
        Ok(())
    }

    /// Installs a snapshot received from the leader: replaces the state machine and
    /// drops the whole log.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        self.sm.restore(&snap.data)?;
        self.set_conf_state(meta.get_conf_state())?;
        self.drop_gens_through(u64::MAX - GEN_SPAN)?;
        self.set_snapshot_meta(meta.index, meta.term)?;
        self.terms.clear();
        self.last = meta.index;
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.set_hard_state(&hs)
    }

    /// Discards entries up to and including `index` (which must be applied): moves
    /// the compaction point, then drops the generation trees wholly behind it.
    pub fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        if index <= self.snap_index || index > self.sm.applied_index() || index > self.last {
            return Ok(());
        }
        let term = self.term(index).map_err(corrupt)?;
        let gone = (index - self.snap_index) as usize;
        self.set_snapshot_meta(index, term)?;
        self.terms.drain(..gone);
        self.drop_gens_through(index)
    }

    fn read_entry(&self, index: u64) -> Result<Option<Entry>, StoreError> {
        let Some(tree) = self.gens.get(&gen_of(index)) else {
            return Ok(None);
        };
        match tree.get(index.to_be_bytes())? {
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
        if low >= high {
            return Ok(Vec::new());
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        'gens: for (_, tree) in self.gens.range(gen_of(low)..=gen_of(high - 1)) {
            for item in tree.range(low.to_be_bytes()..high.to_be_bytes()) {
                let (_, v) = item.map_err(|e| raft_err(e.into()))?;
                size += (v.len() - 8) as u64;
                if !out.is_empty() && size > max {
                    break 'gens;
                }
                out.push(Entry::parse_from_bytes(&v[8..]).map_err(|e| raft_err(corrupt(e)))?);
            }
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
        match self.terms.get((idx - self.snap_index - 1) as usize) {
            Some(term) => Ok(*term),
            None => Err(RaftError::Store(StorageError::Unavailable)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = format!("entry {index}").into_bytes().into();
        e
    }

    fn open(dir: &std::path::Path) -> SledStorage {
        // sled releases its file lock once its flusher thread has stopped.
        let mut tries = 0;
        let db = loop {
            match sled::open(dir) {
                Ok(db) => break db,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("open {}: {e}", dir.display()),
            }
        };
        SledStorage::open(StateMachine::open(db).unwrap()).unwrap()
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn entries_span_generations_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            let all: Vec<Entry> = (1..=GEN_SPAN * 2 + 10)
                .map(|i| entry(i, 1 + i / 5000))
                .collect();
            for chunk in all.chunks(1000) {
                s.append(chunk).unwrap();
            }
            s.meta.flush().unwrap();
        }
        let s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), GEN_SPAN * 2 + 10);
        assert_eq!(s.term(GEN_SPAN + 3).unwrap(), 1 + (GEN_SPAN + 3) / 5000);
        let got = s.entries(GEN_SPAN - 2, GEN_SPAN + 3, None, ctx()).unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (GEN_SPAN - 2..GEN_SPAN + 3).collect::<Vec<_>>());
        assert_eq!(got[2].data.as_ref(), format!("entry {GEN_SPAN}").as_bytes());
    }

    #[test]
    fn a_conflicting_append_replaces_the_suffix_across_generations() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let first: Vec<Entry> = (1..=GEN_SPAN + 100).map(|i| entry(i, 1)).collect();
        s.append(&first).unwrap();
        s.append(&[entry(GEN_SPAN - 5, 2), entry(GEN_SPAN - 4, 2)])
            .unwrap();
        assert_eq!(s.last_index().unwrap(), GEN_SPAN - 4);
        assert_eq!(s.term(GEN_SPAN - 5).unwrap(), 2);
        assert!(s.term(GEN_SPAN).is_err());
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), GEN_SPAN - 4);
        assert_eq!(s.term(GEN_SPAN - 4).unwrap(), 2);
    }

    #[test]
    fn compaction_drops_whole_generations_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let all: Vec<Entry> = (1..=GEN_SPAN * 3).map(|i| entry(i, 1)).collect();
        s.append(&all).unwrap();
        // The state machine must have applied what is compacted.
        let txns: Vec<_> = (1..=GEN_SPAN * 3)
            .map(|_| lnswarm_common::api::StoreTxn::default())
            .collect();
        let items: Vec<_> = txns
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64 + 1, t, None))
            .collect();
        s.sm.apply_batch(&items).unwrap();
        s.compact(GEN_SPAN * 2 + 7).unwrap();
        assert_eq!(s.first_index().unwrap(), GEN_SPAN * 2 + 8);
        assert!(matches!(
            s.entries(GEN_SPAN, GEN_SPAN + 1, None, ctx()),
            Err(RaftError::Store(StorageError::Compacted))
        ));
        assert_eq!(s.gens.len(), 2, "generations 0 and 1 are dropped");
        let tail = s
            .entries(GEN_SPAN * 2 + 8, GEN_SPAN * 3 + 1, None, ctx())
            .unwrap();
        assert_eq!(tail.len() as u64, GEN_SPAN - 7);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.first_index().unwrap(), GEN_SPAN * 2 + 8);
        assert_eq!(s.last_index().unwrap(), GEN_SPAN * 3);
    }

    #[test]
    fn a_torn_log_ends_at_the_first_gap_or_falling_term() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            s.append(&(1..=20).map(|i| entry(i, 3)).collect::<Vec<_>>())
                .unwrap();
            // What a crash between two generation writes could leave: a stale entry
            // with an older term after newer ones.
            let tree = s.gen_tree(0).unwrap().clone();
            let mut v = 2u64.to_be_bytes().to_vec();
            entry(21, 2).write_to_vec(&mut v).unwrap();
            tree.insert(21u64.to_be_bytes(), v).unwrap();
            let mut v = 3u64.to_be_bytes().to_vec();
            entry(23, 3).write_to_vec(&mut v).unwrap();
            tree.insert(23u64.to_be_bytes(), v).unwrap();
        }
        let mut s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), 20);
        s.append(&[entry(21, 4)]).unwrap();
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), 21, "the debris at 23 was removed");
        assert_eq!(s.term(21).unwrap(), 4);
    }
}
