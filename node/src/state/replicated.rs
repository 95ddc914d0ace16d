//! The store ldk-node is built with when the node runs under a lease.
//!
//! LDK's contract, and how it holds here:
//! - `read` answers NotFound only for a key that does not exist: the whole state is
//!   loaded (linearizably, under the epoch) before the node is built, and this
//!   process is its only writer from then on, so memory is the truth;
//! - writes to one key land in the order they were made: every write and remove
//!   joins one FIFO queue at call time, and one writer sends the queue in order, one
//!   fenced write at a time (see `WriteNodeStateRequest` for how retries stay
//!   exactly-once);
//! - a write returns only once it is committed on a quorum: the sync call blocks,
//!   and the async future resolves, when the write that carries it is answered.
//!
//! Writes queued while one is in flight go out together as the next one (LDK's
//! monitor updates, payment records and wallet changes arrive in bursts).
//! A refusal under a stale epoch ends the process at once.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, RwLock},
};

use ldk_node::{
    io::sqlite_store::SqliteStore,
    lightning::{
        io,
        util::persist::{KVStore, KVStoreSync},
    },
};
use lnswarm_common::{
    api::{
        node_state_client::NodeStateClient, LoadNodeStateRequest, NodeEventRecord, NodeStateKey,
        NodeStateOp, PeerAddressesRequest, RecordEventsRequest, ReportIdleRequest,
        ReportIdleResponse, WriteNodeStateRequest,
    },
    lease::EXIT_FENCED,
};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tracing::{error, info};

use super::{
    rebuildable::{self, is_rebuildable},
    remote::{Refused, Remote},
    StateError,
};

type Key = (String, String, String);

/// Most bytes one write carries (one larger value still goes alone).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
const MAX_BATCH_OPS: usize = 2_000;

/// A caller waiting for its write.
enum Waiter {
    /// A `KVStoreSync` caller, blocked on a plain channel (it may be on a thread of
    /// ldk-node's runtime, where a tokio blocking wait would panic).
    Sync(std::sync::mpsc::SyncSender<io::Result<()>>),
    Async(oneshot::Sender<io::Result<()>>),
}

impl Waiter {
    fn done(self, r: io::Result<()>) {
        match self {
            Waiter::Sync(tx) => {
                let _ = tx.send(r);
            }
            Waiter::Async(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

struct Queued {
    op: NodeStateOp,
    waiter: Waiter,
}

pub struct ReplicatedStore {
    state: RwLock<BTreeMap<Key, Vec<u8>>>,
    remote: Arc<Remote>,
    node_id: String,
    epoch: u64,
    queue: mpsc::UnboundedSender<Queued>,
    local: SqliteStore,
    /// Runs the writer; kept apart from ldk-node's runtime, whose threads may be
    /// the ones blocked waiting on it.
    runtime: tokio::runtime::Runtime,
}

/// Who this process is, for the store.
pub struct Identity {
    pub node_id: String,
    pub epoch: u64,
}

fn check_key(p: &str, s: &str, k: &str) -> io::Result<()> {
    lnswarm_common::ldk_keys::check(p, s, k)
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))
}

fn key_of(k: &Key) -> NodeStateKey {
    NodeStateKey {
        primary: k.0.clone(),
        secondary: k.1.clone(),
        key: k.2.clone(),
    }
}

fn fenced(why: &str) -> ! {
    error!(reason = %why, "a newer copy of this node holds its lease; stopping at once");
    std::process::exit(EXIT_FENCED)
}

impl ReplicatedStore {
    /// Loads the node's state from the managers (copying an old local SQLite store
    /// in first, once, when the replicated one is empty) and starts the writer.
    pub fn open(
        remote: Remote,
        who: Identity,
        storage_dir: &std::path::Path,
    ) -> Result<Arc<Self>, StateError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("node-state")
            .enable_all()
            .build()?;
        std::fs::create_dir_all(storage_dir)?;
        let local = SqliteStore::new(
            storage_dir.to_path_buf(),
            Some(rebuildable::FILE.into()),
            None,
        )
        .map_err(|e| StateError::Refused(format!("opening {}: {e}", rebuildable::FILE)))?;
        let remote = Arc::new(remote);
        let (entries, mut head_version) = {
            let (remote, node_id, epoch) = (remote.clone(), who.node_id.clone(), who.epoch);
            runtime.block_on(async move {
                let r = remote
                    .call("loading the node's state", |mut c| {
                        let req = LoadNodeStateRequest {
                            node_id: node_id.clone(),
                            epoch,
                        };
                        async move { c.load(req).await }
                    })
                    .await;
                match r {
                    Ok(r) => Ok((r.entries, r.head_version)),
                    Err(Refused::Fenced(why)) => fenced(&why),
                    Err(Refused::Final(s)) => Err(StateError::Refused(s.to_string())),
                }
            })?
        };
        let mut state = BTreeMap::new();
        for e in entries {
            let k = e.key.unwrap_or_default();
            state.insert((k.primary, k.secondary, k.key), e.value);
        }
        let incarnation = rand::random::<u64>();
        let (queue, rx) = mpsc::unbounded_channel();
        let mut seq = 0u64;
        if state.is_empty() {
            if let Some(old) = super::migrate::read_old_store(storage_dir)? {
                let copied = old.rows.len();
                (head_version, seq) = runtime.block_on(write_all(
                    &remote,
                    &who,
                    incarnation,
                    head_version,
                    old.rows.iter().map(|(k, v)| NodeStateOp {
                        key: Some(key_of(k)),
                        value: v.clone(),
                        remove: false,
                    }),
                ))?;
                for (k, v) in &old.rows {
                    state.insert(k.clone(), v.clone());
                }
                old.retire()?;
                info!(
                    keys = copied,
                    "copied the node's local state into the replicated store, once"
                );
            }
        }
        info!(
            keys = state.len(),
            epoch = who.epoch,
            "node state loaded from the managers"
        );
        let (node_id, epoch) = (who.node_id.clone(), who.epoch);
        let order = Order {
            incarnation,
            seq,
            head: head_version,
        };
        runtime.spawn(writer(remote.clone(), who, order, rx));
        Ok(Arc::new(ReplicatedStore {
            state: RwLock::new(state),
            remote,
            node_id,
            epoch,
            queue,
            local,
            runtime,
        }))
    }

    /// Where those of `peers` that are hosted nodes of this cluster listen now
    /// (blocks; for a thread that may block).
    pub fn peer_addresses(&self, peers: Vec<String>) -> Vec<(String, String)> {
        let (node_id, epoch) = (self.node_id.clone(), self.epoch);
        let answer = self.spawn_call("asking where peers went", move |mut c| {
            let req = PeerAddressesRequest {
                node_id: node_id.clone(),
                epoch,
                peers: peers.clone(),
            };
            async move { c.peer_addresses(req).await }
        });
        match answer.blocking_recv() {
            Ok(Ok(r)) => r
                .addresses
                .into_iter()
                .map(|a| (a.node_id, a.address))
                .collect(),
            Ok(Err(Refused::Fenced(why))) => fenced(&why),
            _ => Vec::new(),
        }
    }

    /// Makes `events` durable for the owner's webhooks, fenced like a write; waits
    /// through a leader change. A stale copy's call ends the process.
    pub async fn record_events(&self, events: Vec<NodeEventRecord>) -> Result<u32, String> {
        let (node_id, epoch) = (self.node_id.clone(), self.epoch);
        let r = self
            .ask("recording events for webhooks", move |mut c| {
                let req = RecordEventsRequest {
                    node_id: node_id.clone(),
                    epoch,
                    events: events.clone(),
                };
                async move { c.record_events(req).await }
            })
            .await?;
        Ok(r.deliveries)
    }

    /// Tells the managers how long the node has been idle (see `crate::idle`).
    pub async fn report_idle(&self, idle_for_ms: u64) -> Result<ReportIdleResponse, String> {
        let (node_id, epoch) = (self.node_id.clone(), self.epoch);
        self.ask("reporting idleness", move |mut c| {
            let req = ReportIdleRequest {
                node_id: node_id.clone(),
                epoch,
                idle_for_ms,
            };
            async move { c.report_idle(req).await }
        })
        .await
    }

    /// Runs `call` through [`Remote::call`] on this store's runtime (where its
    /// connections live); the answer comes on the returned channel.
    fn spawn_call<T, F, Fut>(
        &self,
        what: &'static str,
        call: F,
    ) -> oneshot::Receiver<Result<T, Refused>>
    where
        T: Send + 'static,
        F: FnMut(NodeStateClient<Channel>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send,
    {
        let remote = self.remote.clone();
        let (tx, rx) = oneshot::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(remote.call(what, call).await);
        });
        rx
    }

    /// [`Self::spawn_call`], awaited; a refusal under a stale epoch ends the process.
    async fn ask<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnMut(NodeStateClient<Channel>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send,
    {
        match self.spawn_call(what, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(Refused::Fenced(why))) => fenced(&why),
            Ok(Err(Refused::Final(s))) => Err(s.message().to_string()),
            Err(_) => Err("the node-state runtime has stopped".into()),
        }
    }

    /// Records the change in memory and queues it; the waiter hears when it is
    /// committed.
    fn enqueue(&self, key: Key, value: Option<Vec<u8>>, waiter: Waiter) {
        let op = NodeStateOp {
            key: Some(key_of(&key)),
            remove: value.is_none(),
            value: value.clone().unwrap_or_default(),
        };
        {
            let mut state = self.state.write().expect("state lock");
            match value {
                Some(v) => state.insert(key, v),
                None => state.remove(&key),
            };
            // Queued under the lock, so the queue's order is the memory's order.
            if let Err(e) = self.queue.send(Queued { op, waiter }) {
                e.0.waiter.done(Err(io::Error::new(
                    io::ErrorKind::Other,
                    "the node-state writer has stopped",
                )));
            }
        }
    }

    fn write_sync(&self, key: Key, value: Option<Vec<u8>>) -> io::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.enqueue(key, value, Waiter::Sync(tx));
        rx.recv().map_err(|_| {
            io::Error::new(io::ErrorKind::Other, "the node-state writer has stopped")
        })?
    }

    fn write_async(
        &self,
        key: Key,
        value: Option<Vec<u8>>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        self.enqueue(key, value, Waiter::Async(tx));
        async move {
            rx.await.map_err(|_| {
                io::Error::new(io::ErrorKind::Other, "the node-state writer has stopped")
            })?
        }
    }

    fn read_mem(&self, p: &str, s: &str, k: &str) -> io::Result<Vec<u8>> {
        self.state
            .read()
            .expect("state lock")
            .get(&(p.to_string(), s.to_string(), k.to_string()))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{p}/{s}/{k}")))
    }

    fn list_mem(&self, p: &str, s: &str) -> Vec<String> {
        let state = self.state.read().expect("state lock");
        let from = (p.to_string(), s.to_string(), String::new());
        state
            .range(from..)
            .take_while(|((kp, ks, _), _)| kp == p && ks == s)
            .map(|((_, _, k), _)| k.clone())
            .collect()
    }
}

/// Writes `ops` (a one-time copy) in batches; returns the new head version and the
/// last sequence number used.
async fn write_all(
    remote: &Remote,
    who: &Identity,
    incarnation: u64,
    mut head: u64,
    ops: impl Iterator<Item = NodeStateOp>,
) -> Result<(u64, u64), StateError> {
    let mut seq = 0u64;
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut ops = ops.peekable();
    while ops.peek().is_some() {
        while let Some(op) = ops.next_if(|_| bytes < MAX_BATCH_BYTES && batch.len() < MAX_BATCH_OPS)
        {
            bytes += op.value.len();
            batch.push(op);
        }
        seq += 1;
        head = send(
            remote,
            who,
            incarnation,
            seq,
            head,
            std::mem::take(&mut batch),
        )
        .await
        .map_err(|s| StateError::Refused(s.to_string()))?;
        bytes = 0;
    }
    Ok((head, seq))
}

/// Where this process is in its write order: the last write it made.
struct Order {
    incarnation: u64,
    seq: u64,
    head: u64,
}

/// One fenced write; ends the process when fenced.
async fn send(
    remote: &Remote,
    who: &Identity,
    incarnation: u64,
    seq: u64,
    after_version: u64,
    ops: Vec<NodeStateOp>,
) -> Result<u64, tonic::Status> {
    let req = WriteNodeStateRequest {
        node_id: who.node_id.clone(),
        epoch: who.epoch,
        ops,
        incarnation,
        seq,
        after_version,
    };
    match remote
        .call("writing the node's state", |mut c| {
            let req = req.clone();
            async move { c.write(req).await }
        })
        .await
    {
        Ok(r) => Ok(r.index),
        Err(Refused::Fenced(why)) => fenced(&why),
        Err(Refused::Final(s)) => Err(s),
    }
}

/// Sends the queue in order, batching what waits.
async fn writer(
    remote: Arc<Remote>,
    who: Identity,
    order: Order,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) {
    let Order {
        incarnation,
        mut seq,
        mut head,
    } = order;
    while let Some(first) = rx.recv().await {
        let mut bytes = first.op.value.len();
        let mut batch = vec![first];
        while bytes < MAX_BATCH_BYTES && batch.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += q.op.value.len();
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        seq += 1;
        let (ops, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.op, q.waiter)).unzip();
        match send(&remote, &who, incarnation, seq, head, ops).await {
            Ok(index) => {
                head = index;
                for w in waiters {
                    w.done(Ok(()));
                }
            }
            Err(s) => {
                // Final and not a fence: a bug. Memory is now ahead of the store, so
                // nothing more may be acknowledged; stop rather than diverge.
                error!(error = %s, "the managers refused the node's state write; stopping");
                for w in waiters {
                    w.done(Err(io::Error::new(io::ErrorKind::Other, s.to_string())));
                }
                std::process::exit(1);
            }
        }
    }
}

impl KVStoreSync for ReplicatedStore {
    fn read(&self, p: &str, s: &str, k: &str) -> io::Result<Vec<u8>> {
        if is_rebuildable(p, s, k) {
            return KVStoreSync::read(&self.local, p, s, k);
        }
        self.read_mem(p, s, k)
    }

    fn write(&self, p: &str, s: &str, k: &str, buf: Vec<u8>) -> io::Result<()> {
        if is_rebuildable(p, s, k) {
            return KVStoreSync::write(&self.local, p, s, k, buf);
        }
        check_key(p, s, k)?;
        self.write_sync((p.into(), s.into(), k.into()), Some(buf))
    }

    fn remove(&self, p: &str, s: &str, k: &str, lazy: bool) -> io::Result<()> {
        if is_rebuildable(p, s, k) {
            return KVStoreSync::remove(&self.local, p, s, k, lazy);
        }
        check_key(p, s, k)?;
        self.write_sync((p.into(), s.into(), k.into()), None)
    }

    fn list(&self, p: &str, s: &str) -> io::Result<Vec<String>> {
        let mut keys = self.list_mem(p, s);
        if p.is_empty() && s.is_empty() {
            keys.extend(KVStoreSync::list(&self.local, p, s)?);
        }
        Ok(keys)
    }
}

type AsyncResult<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<T>> + Send + 'static>>;

impl KVStore for ReplicatedStore {
    fn read(&self, p: &str, s: &str, k: &str) -> AsyncResult<Vec<u8>> {
        if is_rebuildable(p, s, k) {
            return KVStore::read(&self.local, p, s, k);
        }
        let r = self.read_mem(p, s, k);
        Box::pin(async move { r })
    }

    fn write(&self, p: &str, s: &str, k: &str, buf: Vec<u8>) -> AsyncResult<()> {
        if is_rebuildable(p, s, k) {
            return KVStore::write(&self.local, p, s, k, buf);
        }
        if let Err(e) = check_key(p, s, k) {
            return Box::pin(async move { Err(e) });
        }
        Box::pin(self.write_async((p.into(), s.into(), k.into()), Some(buf)))
    }

    fn remove(&self, p: &str, s: &str, k: &str, lazy: bool) -> AsyncResult<()> {
        if is_rebuildable(p, s, k) {
            return KVStore::remove(&self.local, p, s, k, lazy);
        }
        if let Err(e) = check_key(p, s, k) {
            return Box::pin(async move { Err(e) });
        }
        Box::pin(self.write_async((p.into(), s.into(), k.into()), None))
    }

    fn list(&self, p: &str, s: &str) -> AsyncResult<Vec<String>> {
        let r = KVStoreSync::list(self, p, s);
        Box::pin(async move { r })
    }
}
