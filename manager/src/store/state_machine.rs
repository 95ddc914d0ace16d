//! The state machine every manager applies the log to. Objects, the applied index and
//! a bounded change log live in sled and change in one sled transaction per command,
//! so a restart neither re-applies nor skips a command.
//!
//! Values are stored as `[version: u64 BE][prost bytes]`, where version is the index
//! of the command that last wrote the key. The change log (index → what changed, with
//! watch tags) lets a reader ask "what changed for agent X since index N" on any
//! manager, including a new leader.

use std::sync::Arc;

use lnswarm_common::api::{store_check::Kind, StoreChange, StoreChangeSet, StoreCheck, StoreTxn};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{watch::WatchHub, StoreError};

const APPLIED_INDEX: &[u8] = b"applied_index";
/// How many applied commands the change log keeps for incremental readers.
pub const CHANGELOG_RETAIN: u64 = 100_000;

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
    kv: sled::Tree,
    meta: sled::Tree,
    changelog: sled::Tree,
    watch: Arc<WatchHub>,
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

impl StateMachine {
    /// Opens the state machine's trees in `db` (shared with the raft log when there
    /// is one).
    pub fn open(db: sled::Db) -> Result<Self, StoreError> {
        Ok(StateMachine {
            kv: db.open_tree("sm_kv")?,
            meta: db.open_tree("sm_meta")?,
            changelog: db.open_tree("sm_changelog")?,
            db,
            watch: Arc::new(WatchHub::default()),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn watch(&self) -> &Arc<WatchHub> {
        &self.watch
    }

    /// Index of the last applied command.
    pub fn applied_index(&self) -> u64 {
        self.meta
            .get(APPLIED_INDEX)
            .ok()
            .flatten()
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0)
    }

    pub fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.kv.get(key)?.map(|v| decode_value(&v)).transpose()
    }

    /// Every key under `prefix`, in key order.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        self.kv
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), decode_value(&v)?))
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

    /// Applies consecutive commands in one sled transaction (one per raft Ready
    /// rather than one per command); each sees the writes of those before it. The
    /// applied index moves to the last one.
    #[allow(clippy::type_complexity)]
    pub fn apply_batch(
        &self,
        items: &[(u64, &StoreTxn, Option<(&[u8], Vec<u8>)>)],
    ) -> Result<Vec<Applied>, StoreError> {
        let applied_before = self.applied_index();
        let result = (&self.kv, &self.meta, &self.changelog).transaction(|(kv, meta, cl)| {
            let mut out = Vec::with_capacity(items.len());
            for (index, txn, meta_write) in items {
                out.push(apply_one(
                    kv,
                    meta,
                    cl,
                    applied_before,
                    *index,
                    txn,
                    meta_write,
                )?);
            }
            // One applied-index write for the whole batch.
            if let Some(last) = items
                .iter()
                .map(|i| i.0)
                .max()
                .filter(|l| *l > applied_before)
            {
                meta.insert(APPLIED_INDEX, &last.to_be_bytes())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(out)
        });
        let applied = match result {
            Ok(a) => a,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        for ((_, txn, _), a) in items.iter().zip(&applied) {
            if let (Applied::Committed(index), false) = (*a, txn.ops.is_empty()) {
                let tags = txn.ops.iter().flat_map(|op| op.tags.iter());
                self.watch.notify(index, tags);
            }
        }
        Ok(applied)
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
        for item in self.changelog.range((since + 1).to_be_bytes()..) {
            let (_, v) = item?;
            let mut set = StoreChangeSet::decode(v.as_ref())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if !tag.is_empty() {
                set.changes.retain(|c| c.tags.iter().any(|t| t == tag));
            }
            if !set.changes.is_empty() {
                out.push(set);
            }
        }
        Ok(Some(out))
    }

    /// A value of the meta tree (where the applied index lives).
    pub fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes a value of the meta tree outside any command (recovery only).
    pub fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value)?;
        Ok(())
    }

    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The whole state (objects, applied index, change log) as one blob, for raft
    /// snapshots.
    pub fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let mut ops = Vec::new();
        for item in self.kv.iter() {
            let (k, v) = item?;
            ops.push(StoreOp {
                key: String::from_utf8_lossy(&k).into_owned(),
                value: Some(v.to_vec()),
                tags: vec![],
            });
        }
        let snapshot = StoreSnapshot {
            applied_index: self.applied_index(),
            entries: ops,
        };
        Ok(snapshot.encode_to_vec())
    }

    /// Replaces the whole state with a snapshot's.
    pub fn restore(&self, blob: &[u8]) -> Result<u64, StoreError> {
        let snapshot =
            StoreSnapshot::decode(blob).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.kv.clear()?;
        self.changelog.clear()?;
        let mut batch = sled::Batch::default();
        for e in &snapshot.entries {
            if let Some(v) = &e.value {
                batch.insert(e.key.as_bytes(), v.as_slice());
            }
        }
        self.kv.apply_batch(batch)?;
        self.meta
            .insert(APPLIED_INDEX, &snapshot.applied_index.to_be_bytes())?;
        self.watch.notify_all(snapshot.applied_index);
        Ok(snapshot.applied_index)
    }
}

use lnswarm_common::api::{StoreOp, StoreSnapshot};

type Tx = sled::transaction::TransactionalTree;

/// One command inside a transaction (see [`StateMachine::apply_batch`]).
fn apply_one(
    kv: &Tx,
    meta: &Tx,
    cl: &Tx,
    applied_before: u64,
    index: u64,
    txn: &StoreTxn,
    meta_write: &Option<(&[u8], Vec<u8>)>,
) -> Result<Applied, ConflictableTransactionError<StoreError>> {
    // Already applied before a restart.
    if index <= applied_before {
        return Ok(Applied::CheckFailed(index));
    }
    let mut ok = true;
    for check in &txn.checks {
        let current = kv
            .get(check.key.as_bytes())?
            .map(|raw| decode_value(&raw).map(|v| v.version).unwrap_or(0));
        ok &= match (check.kind(), current) {
            (Kind::Absent, None) => true,
            (Kind::Present, Some(_)) => true,
            (Kind::Version, Some(v)) => v == check.version,
            _ => false,
        };
    }
    if let Some((key, value)) = meta_write {
        meta.insert(*key, value.as_slice())?;
    }
    if !ok {
        return Ok(Applied::CheckFailed(index));
    }
    let mut changes = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        let old = kv.get(op.key.as_bytes())?;
        match &op.value {
            Some(value) => {
                kv.insert(op.key.as_bytes(), encode_value(index, value))?;
            }
            None => {
                kv.remove(op.key.as_bytes())?;
            }
        }
        if old.is_some() || op.value.is_some() {
            changes.push(StoreChange {
                key: op.key.clone(),
                deleted: op.value.is_none(),
                tags: op.tags.clone(),
            });
        }
    }
    let set = StoreChangeSet { index, changes };
    cl.insert(&index.to_be_bytes(), set.encode_to_vec())?;
    if index > CHANGELOG_RETAIN {
        cl.remove(&(index - CHANGELOG_RETAIN).to_be_bytes())?;
    }
    Ok(Applied::Committed(index))
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
