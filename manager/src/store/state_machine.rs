//! The state machine every manager applies the log to. Objects, the applied index and
//! a bounded change log live in one sled tree (under the prefixes `k`, `m` and `c`),
//! and a batch of commands is written with one atomic `sled::Batch`, so a restart
//! neither re-applies nor skips a command and a batch costs one tree write, not a
//! multi-tree transaction.
//!
//! Values are stored as `[version: u64 BE][prost bytes]`, where version is the index
//! of the command that last wrote the key. The change log (what each command changed,
//! with watch tags; one record per batch, keyed by the batch's last index) lets a
//! reader ask "what changed for agent X since index N" on any manager, including a
//! new leader.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use lnswarm_common::api::{
    store_check::Kind, StoreChange, StoreChangeSet, StoreCheck, StoreOp, StoreSnapshot, StoreTxn,
};
use prost::Message;

use super::{index::TaskIndex, watch::WatchHub, StoreError};

const APPLIED_INDEX: &[u8] = b"applied_index";
/// How many applied commands the change log keeps for incremental readers.
pub const CHANGELOG_RETAIN: u64 = 100_000;

/// Key prefixes inside the one tree.
const OBJECT: u8 = b'k';
const META: u8 = b'm';
const CHANGE: u8 = b'c';

fn prefixed(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(prefix);
    k.extend_from_slice(key);
    k
}

fn change_key(index: u64) -> Vec<u8> {
    prefixed(CHANGE, &index.to_be_bytes())
}

/// A stored value and the index that wrote it.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub version: u64,
    pub value: Vec<u8>,
}

impl Versioned {
    pub fn decode<M: Message + Default>(&self) -> Result<M, StoreError> {
        M::decode(self.value.as_slice()).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// Outcome of applying one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The checks held and the ops were written at this index.
    Committed(u64),
    /// A check failed; nothing was written (the index is still consumed).
    CheckFailed(u64),
}

impl Applied {
    pub fn index(self) -> u64 {
        match self {
            Applied::Committed(i) | Applied::CheckFailed(i) => i,
        }
    }
}

#[derive(Clone)]
pub struct StateMachine {
    db: sled::Db,
    tree: sled::Tree,
    /// The applied index as last written (read on every status and every read).
    applied: Arc<AtomicU64>,
    /// Held while a batch is written or the whole state is read, so a snapshot sees
    /// one applied index and exactly the objects it produced.
    writing: Arc<Mutex<()>>,
    /// Moves whenever a certificate record may have changed, so the authorization
    /// layer can keep revocation answers in memory between changes.
    certificates: Arc<AtomicU64>,
    watch: Arc<WatchHub>,
    /// Tasks by agent.
    tasks: Arc<std::sync::RwLock<TaskIndex>>,
}

fn encode_value(version: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn decode_value(raw: &[u8]) -> Result<Versioned, StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Corrupt("short value".into()));
    }
    Ok(Versioned {
        version: u64::from_be_bytes(raw[..8].try_into().expect("8 bytes")),
        value: raw[8..].to_vec(),
    })
}

/// One change log record: the batch's change sets, each length-delimited.
fn decode_change_record(mut buf: &[u8]) -> Result<Vec<StoreChangeSet>, StoreError> {
    let mut sets = Vec::new();
    while !buf.is_empty() {
        sets.push(
            StoreChangeSet::decode_length_delimited(&mut buf)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
    }
    Ok(sets)
}

fn version_of(raw: &[u8]) -> u64 {
    raw.get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

impl StateMachine {
    /// Opens the state machine's tree in `db` (shared with the raft log when there
    /// is one).
    pub fn open(db: sled::Db) -> Result<Self, StoreError> {
        let tree = db.open_tree("sm")?;
        let applied = tree
            .get(prefixed(META, APPLIED_INDEX))?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        let sm = StateMachine {
            tree,
            db,
            applied: Arc::new(AtomicU64::new(applied)),
            writing: Arc::default(),
            certificates: Arc::default(),
            watch: Arc::new(WatchHub::default()),
            tasks: Arc::default(),
        };
        sm.rebuild_task_index()?;
        Ok(sm)
    }

    fn rebuild_task_index(&self) -> Result<(), StoreError> {
        let mut index = self.tasks.write().expect("task index lock");
        index.clear();
        for item in self
            .tree
            .scan_prefix(prefixed(OBJECT, super::keys::TASKS.as_bytes()))
        {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k[1..]).into_owned();
            index.update(&key, Some(&decode_value(&v)?.value));
        }
        Ok(())
    }

    /// The tasks placed on `agent_id`, from the index (no scan of every task).
    pub fn tasks_of_agent(&self, agent_id: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let keys = self
            .tasks
            .read()
            .expect("task index lock")
            .of_agent(agent_id);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = self.get(&key)? {
                out.push((key, v));
            }
        }
        Ok(out)
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn watch(&self) -> &Arc<WatchHub> {
        &self.watch
    }

    /// A number that changes after any certificate record changed (see
    /// [`crate::ca::StoreRevocations`]).
    pub fn certificates_generation(&self) -> u64 {
        self.certificates.load(Ordering::Acquire)
    }

    /// Index of the last applied command.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.tree
            .get(prefixed(OBJECT, key.as_bytes()))?
            .map(|v| decode_value(&v))
            .transpose()
    }

    /// Every key under `prefix`, in key order.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        self.tree
            .scan_prefix(prefixed(OBJECT, prefix.as_bytes()))
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    String::from_utf8_lossy(&k[1..]).into_owned(),
                    decode_value(&v)?,
                ))
            })
            .collect()
    }

    /// Applies the command at `index`. Indexes at or below the applied index are
    /// skipped (already applied before a restart).
    pub fn apply(&self, index: u64, txn: &StoreTxn) -> Result<Applied, StoreError> {
        self.apply_with_meta(index, txn, None)
    }

    /// Like [`apply`](Self::apply), and also writes `meta` (a key of the meta tree,
    /// such as the raft conf state) in the same transaction, so it changes exactly
    /// when the applied index does.
    pub fn apply_with_meta(
        &self,
        index: u64,
        txn: &StoreTxn,
        meta_write: Option<(&[u8], Vec<u8>)>,
    ) -> Result<Applied, StoreError> {
        Ok(self.apply_batch(&[(index, txn, meta_write)])?[0])
    }

    /// Applies consecutive commands in one atomic batch (one per raft Ready rather
    /// than one per command); each sees the writes of those before it. The applied
    /// index moves to the last one.
    #[allow(clippy::type_complexity)]
    pub fn apply_batch(
        &self,
        items: &[(u64, &StoreTxn, Option<(&[u8], Vec<u8>)>)],
    ) -> Result<Vec<Applied>, StoreError> {
        let _writing = self.writing.lock().expect("state machine write lock");
        let applied_before = self.applied_index();
        let mut pending = Pending {
            tree: &self.tree,
            batch: sled::Batch::default(),
            written: HashMap::new(),
            changes: Vec::new(),
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, txn, meta_write) in items {
            out.push(pending.apply_one(applied_before, *index, txn, meta_write)?);
        }
        let last = items
            .iter()
            .map(|i| i.0)
            .max()
            .filter(|l| *l > applied_before);
        if let Some(last) = last {
            pending
                .batch
                .insert(prefixed(META, APPLIED_INDEX), &last.to_be_bytes());
            pending.log_changes(last)?;
        }
        self.tree.apply_batch(pending.batch)?;
        {
            // Before the applied index moves, so a reader that sees the index sees
            // the tasks it covers.
            let mut index = self.tasks.write().expect("task index lock");
            for ((_, txn, _), a) in items.iter().zip(&out) {
                if matches!(a, Applied::Committed(_)) {
                    for op in &txn.ops {
                        index.update(&op.key, op.value.as_deref());
                    }
                }
            }
        }
        if let Some(last) = last {
            self.applied.store(last, Ordering::Release);
        }
        let touches_certificates = items.iter().zip(&out).any(|((_, txn, _), a)| {
            matches!(a, Applied::Committed(_))
                && txn
                    .ops
                    .iter()
                    .any(|op| op.key.starts_with(super::keys::CERTIFICATES))
        });
        if touches_certificates {
            self.certificates.fetch_add(1, Ordering::AcqRel);
        }
        for ((_, txn, _), a) in items.iter().zip(&out) {
            // A node's own state wakes nobody: only that node reads it, and it keeps
            // its own copy (orchestrator passes would otherwise follow every write).
            let only_node_state = txn
                .ops
                .iter()
                .all(|op| op.key.starts_with(super::keys::NODE_STATE));
            if let (Applied::Committed(index), false) = (*a, only_node_state) {
                let tags = txn.ops.iter().flat_map(|op| op.tags.iter());
                self.watch.notify(index, tags);
            }
        }
        Ok(out)
    }

    /// Change sets after `since`, up to the applied index, whose changes carry `tag`
    /// (all changes when `tag` is empty). `None` when the change log no longer reaches
    /// back that far (the reader must start from a complete read).
    pub fn changes_since(
        &self,
        since: u64,
        tag: &str,
    ) -> Result<Option<Vec<StoreChangeSet>>, StoreError> {
        let applied = self.applied_index();
        if since > applied {
            return Ok(None);
        }
        if since < applied.saturating_sub(CHANGELOG_RETAIN - 1) {
            return Ok(None);
        }
        let mut out = Vec::new();
        // Records are keyed by their batch's last index: the first one at or after
        // since + 1 may begin before it.
        for item in self.tree.range(change_key(since + 1)..=change_key(applied)) {
            let (_, v) = item?;
            for mut set in decode_change_record(&v)? {
                if set.index <= since {
                    continue;
                }
                if !tag.is_empty() {
                    set.changes.retain(|c| c.tags.iter().any(|t| t == tag));
                }
                if !set.changes.is_empty() {
                    out.push(set);
                }
            }
        }
        Ok(Some(out))
    }

    /// A value of the meta keys (where the applied index lives).
    pub fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(prefixed(META, key))?.map(|v| v.to_vec()))
    }

    /// Writes a meta value outside any command (recovery only).
    pub fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(prefixed(META, key), value)?;
        Ok(())
    }

    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The whole state (objects and applied index) as one blob, for raft snapshots.
    ///
    /// Returns the applied index the blob holds and, read at the same point, the meta
    /// value under `meta_key` (the raft conf state).
    pub fn snapshot(&self, meta_key: &[u8]) -> Result<SmSnapshot, StoreError> {
        let _writing = self.writing.lock().expect("state machine write lock");
        let meta = self.meta_get(meta_key)?;
        let mut ops = Vec::new();
        for item in self.tree.scan_prefix([OBJECT]) {
            let (k, v) = item?;
            ops.push(StoreOp {
                key: String::from_utf8_lossy(&k[1..]).into_owned(),
                value: Some(v.to_vec()),
                tags: vec![],
            });
        }
        let applied = self.applied_index();
        let snapshot = StoreSnapshot {
            applied_index: applied,
            entries: ops,
        };
        Ok(SmSnapshot {
            applied,
            meta,
            blob: snapshot.encode_to_vec(),
        })
    }

    /// Replaces the whole state with a snapshot's taken at `index`, and writes
    /// `meta_writes` (the raft conf state and snapshot metadata), in one atomic
    /// batch. A blob [`decode_snapshot`] refuses changes nothing.
    pub fn restore(
        &self,
        blob: &[u8],
        index: u64,
        meta_writes: &[(&[u8], &[u8])],
    ) -> Result<u64, StoreError> {
        let snapshot = decode_snapshot(blob, index)?;
        let _writing = self.writing.lock().expect("state machine write lock");
        let mut batch = sled::Batch::default();
        for prefix in [OBJECT, CHANGE] {
            for item in self.tree.scan_prefix([prefix]) {
                batch.remove(item?.0);
            }
        }
        for e in &snapshot.entries {
            if let Some(v) = &e.value {
                batch.insert(prefixed(OBJECT, e.key.as_bytes()), v.as_slice());
            }
        }
        batch.insert(
            prefixed(META, APPLIED_INDEX),
            &snapshot.applied_index.to_be_bytes(),
        );
        for (key, value) in meta_writes {
            batch.insert(prefixed(META, key), *value);
        }
        self.tree.apply_batch(batch)?;
        self.rebuild_task_index()?;
        self.applied
            .store(snapshot.applied_index, Ordering::Release);
        self.certificates.fetch_add(1, Ordering::AcqRel);
        self.watch.notify_all(snapshot.applied_index);
        Ok(snapshot.applied_index)
    }
}

/// A snapshot blob (from [`StateMachine::snapshot`], sent by the leader) that
/// [`StateMachine::restore`] can take as the state at `index`, refused before
/// anything is replaced (state_machine_fuzz.rs): a value shorter than its version
/// prefix replaced the state with values no read can decode (and a task among
/// them failed the restore only after the state was replaced), and a blob of
/// another applied index than its raft index would leave the state machine's
/// applied index apart from raft's.
pub fn decode_snapshot(blob: &[u8], index: u64) -> Result<StoreSnapshot, StoreError> {
    let snapshot = StoreSnapshot::decode(blob).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if snapshot.applied_index != index {
        return Err(StoreError::Corrupt(format!(
            "a snapshot of index {} given as index {index}",
            snapshot.applied_index
        )));
    }
    if let Some(e) = snapshot
        .entries
        .iter()
        .find(|e| e.value.as_ref().is_some_and(|v| decode_value(v).is_err()))
    {
        return Err(StoreError::Corrupt(format!(
            "snapshot value of {:?} has no version",
            e.key
        )));
    }
    Ok(snapshot)
}

/// The whole state at one applied index (see [`StateMachine::snapshot`]).
pub struct SmSnapshot {
    pub applied: u64,
    pub meta: Option<Vec<u8>>,
    pub blob: Vec<u8>,
}

/// A batch being built: the sled batch and, for checks and change detection by
/// later commands of the same batch, what it has written so far.
struct Pending<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    written: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the batch's commands changed, for the change log.
    changes: Vec<StoreChangeSet>,
}

impl Pending<'_> {
    /// An object's raw value as this batch leaves it.
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.written.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match &value {
            Some(v) => self.batch.insert(key.as_slice(), v.as_slice()),
            None => self.batch.remove(key.as_slice()),
        }
        self.written.insert(key, value);
    }

    /// One command of the batch (see [`StateMachine::apply_batch`]).
    fn apply_one(
        &mut self,
        applied_before: u64,
        index: u64,
        txn: &StoreTxn,
        meta_write: &Option<(&[u8], Vec<u8>)>,
    ) -> Result<Applied, StoreError> {
        // Already applied before a restart.
        if index <= applied_before {
            return Ok(Applied::CheckFailed(index));
        }
        let mut ok = true;
        for check in &txn.checks {
            let current = self
                .read(&prefixed(OBJECT, check.key.as_bytes()))?
                .map(|raw| version_of(&raw));
            ok &= match (check.kind(), current) {
                (Kind::Absent, None) => true,
                (Kind::Present, Some(_)) => true,
                (Kind::Version, Some(v)) => v == check.version,
                _ => false,
            };
        }
        if let Some((key, value)) = meta_write {
            self.batch.insert(prefixed(META, key), value.as_slice());
        }
        if !ok {
            return Ok(Applied::CheckFailed(index));
        }
        let mut changes = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            let key = prefixed(OBJECT, op.key.as_bytes());
            let existed = match op.value {
                // A put needs no read: it is a change either way.
                Some(_) => true,
                None => self.read(&key)?.is_some(),
            };
            self.write(key, op.value.as_ref().map(|v| encode_value(index, v)));
            if existed {
                changes.push(StoreChange {
                    key: op.key.clone(),
                    deleted: op.value.is_none(),
                    tags: op.tags.clone(),
                });
            }
        }
        if !changes.is_empty() {
            self.changes.push(StoreChangeSet { index, changes });
        }
        Ok(Applied::Committed(index))
    }

    /// Adds the batch's change record and drops records wholly older than the
    /// retention window.
    fn log_changes(&mut self, last: u64) -> Result<(), StoreError> {
        if !self.changes.is_empty() {
            let mut record = Vec::new();
            for set in &self.changes {
                set.encode_length_delimited(&mut record)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            }
            self.batch.insert(change_key(last), record);
        }
        if last > CHANGELOG_RETAIN {
            let cutoff = change_key(last - CHANGELOG_RETAIN);
            for item in self.tree.range(change_key(0)..=cutoff) {
                self.batch.remove(item?.0);
            }
        }
        Ok(())
    }
}

/// Builds a [`StoreTxn`] fluently.
#[derive(Default, Debug, Clone)]
pub struct TxnBuilder {
    txn: StoreTxn,
}

impl TxnBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn require_absent(mut self, key: impl Into<String>) -> Self {
        self.txn.checks.push(StoreCheck {
            key: key.into(),
            kind: Kind::Absent as i32,
            version: 0,
        });
        self
    }

    pub fn require_present(mut self, key: impl Into<String>) -> Self {
        self.txn.checks.push(StoreCheck {
            key: key.into(),
            kind: Kind::Present as i32,
            version: 0,
        });
        self
    }

    pub fn require_version(mut self, key: impl Into<String>, version: u64) -> Self {
        self.txn.checks.push(StoreCheck {
            key: key.into(),
            kind: Kind::Version as i32,
            version,
        });
        self
    }

    pub fn put<M: Message>(self, key: impl Into<String>, value: &M) -> Self {
        self.put_tagged(key, value, Vec::<String>::new())
    }

    pub fn put_tagged<M: Message>(
        mut self,
        key: impl Into<String>,
        value: &M,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.txn.ops.push(StoreOp {
            key: key.into(),
            value: Some(value.encode_to_vec()),
            tags: tags.into_iter().map(Into::into).collect(),
        });
        self
    }

    pub fn delete_tagged(
        mut self,
        key: impl Into<String>,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.txn.ops.push(StoreOp {
            key: key.into(),
            value: None,
            tags: tags.into_iter().map(Into::into).collect(),
        });
        self
    }

    pub fn build(self) -> StoreTxn {
        self.txn
    }
}

#[cfg(test)]
#[path = "state_machine_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, tag: &str) -> StoreTxn {
        StoreTxn {
            checks: vec![],
            ops: vec![StoreOp {
                key: key.into(),
                value: Some(key.as_bytes().to_vec()),
                tags: vec![tag.into()],
            }],
        }
    }

    #[test]
    fn changes_since_reads_inside_batches_and_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(crate::store::test_db::open(dir.path())).unwrap();
        let txns: Vec<StoreTxn> = (1..=10)
            .map(|i| put(&format!("k{i}"), if i % 2 == 0 { "even" } else { "odd" }))
            .collect();
        // Two batches: 1..=6 and 7..=10.
        for range in [0..6, 6..10] {
            let items: Vec<_> = range.map(|i| (i as u64 + 1, &txns[i], None)).collect();
            sm.apply_batch(&items).unwrap();
        }
        let idx = |sets: Vec<StoreChangeSet>| sets.iter().map(|s| s.index).collect::<Vec<_>>();
        assert_eq!(
            idx(sm.changes_since(3, "").unwrap().unwrap()),
            vec![4, 5, 6, 7, 8, 9, 10]
        );
        assert_eq!(
            idx(sm.changes_since(6, "even").unwrap().unwrap()),
            vec![8, 10]
        );
        assert_eq!(
            idx(sm.changes_since(10, "").unwrap().unwrap()),
            Vec::<u64>::new()
        );
        assert!(sm.changes_since(11, "").unwrap().is_none());
    }

    #[test]
    fn a_failed_check_writes_nothing_and_later_commands_see_earlier_writes() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(crate::store::test_db::open(dir.path())).unwrap();
        let a = put("a", "t");
        let mut needs_absent = put("a", "t");
        needs_absent.checks.push(StoreCheck {
            key: "a".into(),
            kind: Kind::Absent as i32,
            version: 0,
        });
        let mut needs_v1 = put("b", "t");
        needs_v1.checks.push(StoreCheck {
            key: "a".into(),
            kind: Kind::Version as i32,
            version: 1,
        });
        let out = sm
            .apply_batch(&[
                (1, &a, None),
                (2, &needs_absent, None),
                (3, &needs_v1, None),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                Applied::Committed(1),
                Applied::CheckFailed(2),
                Applied::Committed(3)
            ]
        );
        assert_eq!(sm.get("a").unwrap().unwrap().version, 1);
        assert_eq!(sm.get("b").unwrap().unwrap().version, 3);
        assert_eq!(sm.applied_index(), 3);
        // Re-applying after a restart skips what was applied.
        drop(sm);
        let sm = StateMachine::open(crate::store::test_db::open(dir.path())).unwrap();
        assert_eq!(sm.applied_index(), 3);
        assert_eq!(
            sm.apply(3, &put("c", "t")).unwrap(),
            Applied::CheckFailed(3)
        );
        assert!(sm.get("c").unwrap().is_none());
    }
}
