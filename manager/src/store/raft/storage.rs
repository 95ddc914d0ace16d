//! raft-rs's `Storage` over sled, in the same database as the state machine: log
//! entries, the hard state and the compaction point (snapshot metadata); the conf
//! state sits with the state machine's meta keys so it changes in the same batch as
//! the applied index.
//!
//! Each Ready's entries are written as one record (key = first index, big endian;
//! value = the entries, length-delimited), so appending costs one sled insert per
//! Ready, not one per entry. Records live in generation trees of [`GEN_SPAN`]
//! indexes, so compaction drops whole trees instead of deleting entries inside the
//! raft loop. The live log (at most a snapshot interval plus the kept tail) is also
//! held in memory: raft reads terms and entries from there.
//!
//! Nothing here flushes: the Ready loop flushes once per Ready, before anything that
//! depends on durability is sent.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use protobuf::{CodedInputStream, Message as _};
use raft::{
    prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata},
    util::limit_size,
    Error as RaftError, GetEntriesContext, RaftState, Storage, StorageError,
};

use tracing::{info, warn};

use super::admissible::{self, MAX_INDEX};
use crate::store::{StateMachine, StoreError};

const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";
const RAFT_ID: &[u8] = b"raft_id";
/// Key of the conf state in the state machine's meta keys.
pub const CONF_STATE: &[u8] = b"raft_conf_state";
/// The metadata of the last snapshot installed from a leader, written with the
/// restored state so a crash before the log catches up is finished at startup.
const INSTALLED_SNAPSHOT: &[u8] = b"raft_installed_snapshot";
/// Indexes per generation tree (a record belongs to the tree of its first index).
const GEN_SPAN: u64 = 8192;
const GEN_TREE_PREFIX: &str = "raft_log_";

/// An index read from disk beyond [`MAX_INDEX`] is corruption (found by fuzzing,
/// storage_fuzz.rs: raft's `index + 1` overflowed).
fn check_index(index: u64, what: &str) -> Result<u64, StoreError> {
    if index > MAX_INDEX {
        return Err(corrupt(format!("{what} index {index} is beyond any log")));
    }
    Ok(index)
}

fn gen_of(index: u64) -> u64 {
    index / GEN_SPAN
}

fn gen_tree_name(gen: u64) -> String {
    format!("{GEN_TREE_PREFIX}{gen:016x}")
}

pub struct SledStorage {
    db: sled::Db,
    /// Generation → its tree (see [`GEN_SPAN`]).
    gens: BTreeMap<u64, sled::Tree>,
    /// Records on disk: first index → last index.
    records: BTreeMap<u64, u64>,
    /// Entries `snap_index + 1 ..= last()`.
    log: VecDeque<Entry>,
    meta: sled::Tree,
    sm: StateMachine,
    hard_state: HardState,
    /// Index and term of the last compacted entry (or installed snapshot).
    snap_index: u64,
    snap_term: u64,
    /// The snapshot for followers, built off the raft loop.
    built: Arc<Mutex<Built>>,
}

/// Where the snapshot for followers stands.
#[derive(Default)]
enum Built {
    #[default]
    Idle,
    Building,
    Done(Snapshot),
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn raft_err(e: StoreError) -> RaftError {
    RaftError::Store(StorageError::Other(Box::new(e)))
}

fn encode_record(entries: &[Entry]) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::with_capacity(entries.iter().map(|e| e.compute_size() as usize + 4).sum());
    for e in entries {
        e.write_length_delimited_to_vec(&mut v).map_err(corrupt)?;
    }
    Ok(v)
}

fn decode_record(raw: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let mut input = CodedInputStream::from_bytes(raw);
    let mut out = Vec::new();
    while !input.eof().map_err(corrupt)? {
        out.push(input.read_message::<Entry>().map_err(corrupt)?);
    }
    Ok(out)
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
                (check_index(m.index, "snapshot")?, m.term)
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
            records: BTreeMap::new(),
            log: VecDeque::new(),
            meta,
            sm,
            hard_state,
            snap_index,
            snap_term,
            built: Arc::default(),
        };
        // A snapshot whose state was restored before a crash but whose log was not
        // yet replaced: finish installing it.
        if let Some(raw) = storage.sm.meta_get(INSTALLED_SNAPSHOT)? {
            let m = SnapshotMetadata::parse_from_bytes(&raw).map_err(corrupt)?;
            check_index(m.index, "installed snapshot")?;
            if m.index > storage.snap_index {
                info!(
                    index = m.index,
                    "finishing a snapshot installation cut short"
                );
                storage.finish_install(m.index, m.term)?;
            }
        }
        storage.load()?;
        Ok(storage)
    }

    /// Readies the stored state for raft to start on, with `applied` the state
    /// machine's applied index. raft-rs panics when it starts on indexes that do
    /// not fit together (a commit index outside the log, an applied index past the
    /// commit index) or on a conf state it cannot hold; no write order leaves
    /// them, so they are corruption, refused here as an error (found by fuzzing,
    /// storage_fuzz.rs).
    pub fn prepare_start(&mut self, applied: u64) -> Result<(), StoreError> {
        // The commit index in the hard state may lag the applied index by one
        // unflushed write; raft requires applied <= commit.
        if self.hard_state.commit < applied && applied <= self.last() {
            self.set_commit(applied)?;
        }
        // raft reads a default hard state as none (its commit is the compaction
        // point).
        let commit = if self.hard_state == HardState::default() {
            self.snap_index
        } else {
            self.hard_state.commit
        };
        if commit < self.snap_index || commit > self.last() {
            return Err(corrupt(format!(
                "the commit index {commit} is outside the log ({}..={})",
                self.snap_index,
                self.last()
            )));
        }
        if applied > commit || (applied > 0 && applied < self.snap_index) {
            return Err(corrupt(format!(
                "the applied index {applied} is outside the committed log ({}..={commit})",
                self.snap_index
            )));
        }
        admissible::conf_state(&self.conf_state()?).map_err(corrupt)
    }

    /// Reads the live log into memory. It ends at the first missing index or falling
    /// term: what an append cut short by a crash left (never flushed, so never
    /// acknowledged) is removed, so a later append cannot leave it looking like part
    /// of the log.
    fn load(&mut self) -> Result<(), StoreError> {
        let mut prev_term = self.snap_term;
        let mut debris = Vec::new();
        let mut ended = false;
        for (gen, tree) in &self.gens {
            for item in tree.iter() {
                let (k, v) = item?;
                let first = u64::from_be_bytes(k.as_ref().try_into().map_err(corrupt)?);
                if ended {
                    debris.push((*gen, k));
                    continue;
                }
                let entries = decode_record(&v)?;
                let Some(last) = entries.last().map(|e| e.index) else {
                    debris.push((*gen, k));
                    continue;
                };
                if last <= self.snap_index {
                    // Wholly compacted; its tree goes at the next compaction.
                    self.records.insert(first, last);
                    continue;
                }
                let mut cut_at = None;
                for (i, e) in entries.iter().enumerate() {
                    check_index(e.index, "entry")?;
                    if e.index <= self.snap_index {
                        continue;
                    }
                    if e.index != self.last() + 1 || e.term < prev_term {
                        cut_at = Some(i);
                        break;
                    }
                    prev_term = e.term;
                    self.log.push_back(e.clone());
                }
                if let Some(i) = cut_at {
                    ended = true;
                    if i == 0 {
                        debris.push((*gen, k));
                        continue;
                    }
                    // Keep the record's valid part only.
                    self.gens[gen].insert(k, encode_record(&entries[..i])?)?;
                }
                let last = entries[..cut_at.unwrap_or(entries.len())]
                    .last()
                    .expect("non-empty")
                    .index;
                self.records.insert(first, last);
            }
        }
        for (gen, key) in debris {
            self.gens[&gen].remove(key)?;
        }
        Ok(())
    }

    /// Position in `log` of `index` (which must be above the compaction point).
    fn offset(&self, index: u64) -> usize {
        (index - self.snap_index - 1) as usize
    }

    fn gen_tree(&mut self, gen: u64) -> Result<&sled::Tree, StoreError> {
        if !self.gens.contains_key(&gen) {
            let tree = self.db.open_tree(gen_tree_name(gen))?;
            self.gens.insert(gen, tree);
        }
        Ok(&self.gens[&gen])
    }

    /// Drops every generation tree whose records all end at or below `index`.
    fn drop_gens_through(&mut self, index: u64) -> Result<(), StoreError> {
        let mut newest_in_gen: BTreeMap<u64, u64> = BTreeMap::new();
        for (first, last) in &self.records {
            let e = newest_in_gen.entry(gen_of(*first)).or_default();
            *e = (*e).max(*last);
        }
        let done: Vec<u64> = self
            .gens
            .keys()
            .copied()
            .filter(|g| newest_in_gen.get(g).is_none_or(|last| *last <= index))
            .collect();
        for gen in done {
            self.gens.remove(&gen);
            self.records.retain(|first, _| gen_of(*first) != gen);
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
        self.hard_state == HardState::default() && self.last() == 0
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
        self.snap_index + self.log.len() as u64
    }

    /// Appends entries, replacing any conflicting suffix: later records are removed
    /// first, then the record cut by the conflict is rewritten shorter, then the new
    /// record is written, so an append cut short leaves a log that
    /// [`load`](Self::load) ends cleanly.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        if first <= self.snap_index || first > self.last() + 1 {
            return Err(corrupt(format!(
                "append at {first} does not fit the log ({}..={})",
                self.snap_index + 1,
                self.last()
            )));
        }
        if first <= self.last() {
            let stale: Vec<u64> = self.records.range(first..).map(|(f, _)| *f).collect();
            for f in stale.into_iter().rev() {
                self.records.remove(&f);
                self.gen_tree(gen_of(f))?.remove(f.to_be_bytes())?;
            }
            self.log.truncate(self.offset(first));
            let cut = self
                .records
                .range(..first)
                .next_back()
                .filter(|(_, last)| **last >= first)
                .map(|(f, _)| *f);
            if let Some(f) = cut {
                let tree = self.gen_tree(gen_of(f))?;
                let raw = tree
                    .get(f.to_be_bytes())?
                    .ok_or_else(|| corrupt("missing log record"))?;
                let mut kept = decode_record(&raw)?;
                kept.retain(|e| e.index < first);
                tree.insert(f.to_be_bytes(), encode_record(&kept)?)?;
                self.records.insert(f, first - 1);
            }
        }
        let record = encode_record(entries)?;
        self.gen_tree(gen_of(first))?
            .insert(first.to_be_bytes(), record)?;
        let last = entries.last().expect("non-empty").index;
        self.records.insert(first, last);
        self.log.extend(entries.iter().cloned());
        Ok(())
    }

    /// Installs a snapshot received from the leader: replaces the state machine and
    /// drops the whole log.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        let cs = meta.get_conf_state().write_to_bytes().map_err(corrupt)?;
        let installed = meta.write_to_bytes().map_err(corrupt)?;
        self.sm.restore(
            &snap.data,
            meta.index,
            &[(CONF_STATE, &cs), (INSTALLED_SNAPSHOT, &installed)],
        )?;
        self.finish_install(meta.index, meta.term)
    }

    /// The log side of installing a snapshot (safe to repeat): drop the old log,
    /// then move the compaction point and the commit index to the snapshot.
    fn finish_install(&mut self, index: u64, term: u64) -> Result<(), StoreError> {
        self.log.clear();
        self.drop_gens_through(u64::MAX)?;
        self.set_snapshot_meta(index, term)?;
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(index);
        hs.term = hs.term.max(term);
        self.set_hard_state(&hs)
    }

    /// Discards entries up to and including `index` (which must be applied): moves
    /// the compaction point, then drops the generation trees wholly behind it.
    pub fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        if index <= self.snap_index || index > self.sm.applied_index() || index > self.last() {
            return Ok(());
        }
        let term = self.term(index).map_err(corrupt)?;
        let gone = self.offset(index) + 1;
        self.set_snapshot_meta(index, term)?;
        self.log.drain(..gone);
        self.drop_gens_through(index)
    }

    /// Entries in `[low, high)`, for recovery.
    pub fn entries_in(&self, low: u64, high: u64) -> Result<Vec<Entry>, StoreError> {
        if low > high || low <= self.snap_index || high > self.last() + 1 {
            return Err(corrupt(format!("no log entries {low}..{high}")));
        }
        Ok(self
            .log
            .range(self.offset(low)..self.offset(high))
            .cloned()
            .collect())
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
        if high > self.last() + 1 {
            return Err(RaftError::Store(StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let mut out: Vec<Entry> = self
            .log
            .range(self.offset(low)..self.offset(high))
            .cloned()
            .collect();
        limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index {
            return Ok(self.snap_term);
        }
        if idx < self.snap_index {
            return Err(RaftError::Store(StorageError::Compacted));
        }
        match self.log.get(self.offset(idx)) {
            Some(e) => Ok(e.term),
            None => Err(RaftError::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// A snapshot of the state machine for a follower. Building one reads the
    /// whole state, so it happens on its own thread: until it is ready raft hears
    /// "temporarily unavailable" and retries on a later heartbeat. A built snapshot
    /// is reused while it is not behind the compaction point and membership has not
    /// changed since.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut built = self.built.lock().expect("snapshot lock");
        match &*built {
            // A follower refuses a snapshot whose membership leaves it out, so one
            // built before the last membership change is not reused.
            Built::Done(snap)
                if snap.get_metadata().index >= request_index.max(self.snap_index)
                    && snap.get_metadata().get_conf_state()
                        == &self.conf_state().map_err(raft_err)? =>
            {
                return Ok(snap.clone());
            }
            Built::Building => {
                return Err(RaftError::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
            _ => {}
        }
        *built = Built::Building;
        // Committed entries keep their terms, so the terms known now cover any
        // index the state machine reaches while the snapshot is built (a later
        // one is retried).
        let mut terms: Vec<(u64, u64)> = vec![(self.snap_index, self.snap_term)];
        terms.extend(self.log.iter().map(|e| (e.index, e.term)));
        let sm = self.sm.clone();
        let shared = self.built.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || {
                let result = build_snapshot(&sm, &terms);
                let mut built = shared.lock().expect("snapshot lock");
                *built = match result {
                    Ok(snap) => {
                        info!(
                            index = snap.get_metadata().index,
                            bytes = snap.data.len(),
                            "built a snapshot for followers"
                        );
                        Built::Done(snap)
                    }
                    Err(e) => {
                        warn!(error = %e, "building a snapshot failed; it is retried");
                        Built::Idle
                    }
                };
            });
        if spawned.is_err() {
            *built = Built::Idle;
        }
        Err(RaftError::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// The state machine's state with the raft metadata of the index it holds.
fn build_snapshot(sm: &StateMachine, terms: &[(u64, u64)]) -> Result<Snapshot, StoreError> {
    let state = sm.snapshot(CONF_STATE)?;
    let term = terms
        .iter()
        .find(|(index, _)| *index == state.applied)
        .map(|(_, term)| *term)
        .ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the state moved past the known log (applied {})",
                state.applied
            ))
        })?;
    let mut snap = Snapshot::default();
    snap.data = state.blob.into();
    let meta = snap.mut_metadata();
    meta.index = state.applied;
    meta.term = term;
    if let Some(cs) = state.meta {
        meta.set_conf_state(ConfState::parse_from_bytes(&cs).map_err(corrupt)?);
    }
    Ok(snap)
}

#[cfg(test)]
#[path = "storage_fuzz.rs"]
mod fuzz;

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
        SledStorage::open(StateMachine::open(crate::store::test_db::open(dir)).unwrap()).unwrap()
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
        for chunk in all.chunks(1000) {
            s.append(chunk).unwrap();
        }
        // The state machine must have applied what is compacted.
        apply_empty(&s, GEN_SPAN * 3);
        s.compact(GEN_SPAN * 2 + 7).unwrap();
        assert_eq!(s.first_index().unwrap(), GEN_SPAN * 2 + 8);
        assert!(matches!(
            s.entries(GEN_SPAN, GEN_SPAN + 1, None, ctx()),
            Err(RaftError::Store(StorageError::Compacted))
        ));
        // Generation 0's records end by 9000; generation 1 holds a record that
        // reaches past the compaction point, so it stays.
        assert_eq!(s.gens.len(), 2, "generation 0 is dropped");
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
            // What a torn conflicting append could leave: a stale entry with an
            // older term after newer ones, and a record after a gap.
            let tree = s.gen_tree(0).unwrap().clone();
            tree.insert(21u64.to_be_bytes(), encode_record(&[entry(21, 2)]).unwrap())
                .unwrap();
            tree.insert(23u64.to_be_bytes(), encode_record(&[entry(23, 3)]).unwrap())
                .unwrap();
        }
        let mut s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), 20);
        s.append(&[entry(21, 4)]).unwrap();
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), 21, "the debris at 23 was removed");
        assert_eq!(s.term(21).unwrap(), 4);
    }

    #[test]
    fn a_conflict_inside_a_record_that_straddles_the_compaction_point() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            s.append(&(1..=100).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
            apply_empty(&s, 60);
            s.compact(50).unwrap();
            // A new leader replaces 81.. with entries of term 2.
            s.append(&[entry(81, 2), entry(82, 2)]).unwrap();
            assert_eq!(s.last_index().unwrap(), 82);
            s.append(&[entry(83, 2)]).unwrap();
        }
        let s = open(dir.path());
        assert_eq!(s.first_index().unwrap(), 51);
        assert_eq!(s.last_index().unwrap(), 83);
        assert_eq!(s.term(80).unwrap(), 1);
        assert_eq!(s.term(81).unwrap(), 2);
        assert_eq!(s.term(83).unwrap(), 2);
        let got = s.entries(51, 84, None, ctx()).unwrap();
        assert_eq!(got.len(), 33);
        assert_eq!(got[0].data.as_ref(), b"entry 51");
    }

    fn apply_empty(s: &SledStorage, upto: u64) {
        let txns: Vec<_> = (1..=upto)
            .map(|_| lnswarm_common::api::StoreTxn::default())
            .collect();
        let items: Vec<_> = txns
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64 + 1, t, None))
            .collect();
        s.sm.apply_batch(&items).unwrap();
    }

    /// Asks for a snapshot until the one being built off the caller is ready.
    fn built_snapshot(s: &SledStorage, to: u64) -> Snapshot {
        (0..200)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                s.snapshot(0, to).ok()
            })
            .expect("the snapshot is built")
    }

    #[test]
    fn a_snapshot_is_built_off_the_caller_and_matches_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let mut cs = ConfState::default();
        cs.voters = vec![1, 2, 3];
        s.set_conf_state(&cs).unwrap();
        s.append(&(1..=30).map(|i| entry(i, 2)).collect::<Vec<_>>())
            .unwrap();
        apply_empty(&s, 25);
        assert!(matches!(
            s.snapshot(0, 2),
            Err(RaftError::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        let snap = built_snapshot(&s, 2);
        assert_eq!(snap.get_metadata().index, 25);
        assert_eq!(snap.get_metadata().term, 2);
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        // A member added since is in the next one (it would refuse the old one).
        cs.voters = vec![1, 2, 3, 4];
        s.set_conf_state(&cs).unwrap();
        let snap = built_snapshot(&s, 4);
        assert_eq!(
            snap.get_metadata().get_conf_state().voters,
            vec![1, 2, 3, 4]
        );
        // Once the log is compacted past it, a new one is built.
        apply_empty(&s, 28);
        s.compact(27).unwrap();
        assert!(
            s.snapshot(0, 2).is_err(),
            "25 is behind the compaction point 27"
        );
    }

    #[test]
    fn an_installation_cut_short_by_a_crash_is_finished_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let blob;
        {
            // A leader's state at index 40.
            let other = tempfile::tempdir().unwrap();
            let leader = open(other.path());
            apply_empty(&leader, 40);
            blob = leader.sm.snapshot(CONF_STATE).unwrap().blob;
        }
        {
            let mut s = open(dir.path());
            s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
            let mut meta = SnapshotMetadata::default();
            meta.index = 40;
            meta.term = 3;
            meta.mut_conf_state().voters = vec![7];
            let cs = meta.get_conf_state().write_to_bytes().unwrap();
            let installed = meta.write_to_bytes().unwrap();
            // The state is restored; the crash comes before the log is replaced.
            s.sm.restore(
                &blob,
                40,
                &[(CONF_STATE, &cs), (INSTALLED_SNAPSHOT, &installed)],
            )
            .unwrap();
        }
        let s = open(dir.path());
        assert_eq!(s.sm.applied_index(), 40);
        assert_eq!(s.first_index().unwrap(), 41);
        assert_eq!(s.last_index().unwrap(), 40);
        assert_eq!(s.term(40).unwrap(), 3);
        assert!(s.hard_state.commit >= 40);
        assert_eq!(s.conf_state().unwrap().voters, vec![7]);
    }
}
