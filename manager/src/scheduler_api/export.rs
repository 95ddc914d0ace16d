//! ExportNode and DownloadExport: the owner takes their node out of the cluster,
//! as Greenlight's export does. The node is stopped cleanly (so ldk-node's last
//! ChannelManager write lands), then fenced (its lease epoch moves on, so no copy
//! anywhere can write again), then its whole replicated state is packed into a
//! `NodeExport`, encrypted to the node's own key (`lnswarm_common::node_export`:
//! the managers need only the node id) and kept in the store in chunks, and the
//! node is marked EXPORTED: it never runs here again. A second call answers the
//! same export.

use std::time::Duration;

use lnswarm_common::{
    api::{HostedNode, HostedNodeState, NodeExport, NodeExportRecord, StoreOp, Task},
    ids::{new_id, now_unix_ms},
    node_export::{self, ExportCryptError},
};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::info;

use crate::{
    node_state::fence::{self, FenceError, NextLease},
    placement::is_live,
    store::{keys, Applied, Attempt, Store, StoreError, TxnBuilder},
};

/// Size of one stored chunk of an export (and the most one download message
/// carries): well under the raft and gRPC message limits.
pub const CHUNK_SIZE: usize = 1 << 20;

/// How long ExportNode waits for the node's tasks to stop before it answers
/// UNAVAILABLE (a second call carries on from where the first left off).
pub const STOP_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("this node is not registered")]
    NotRegistered,
    #[error("the node is still stopping after {secs} s ({message}); call ExportNode again to finish the export")]
    StillRunning { secs: u64, message: String },
    #[error("another ExportNode call for this node is finishing the export; call again")]
    Concurrent,
    #[error("the node has not been exported; call ExportNode first")]
    NotExported,
    #[error("offset {offset} is past the end of the export ({size} bytes)")]
    PastEnd { offset: u64, size: u64 },
    #[error("the node id in the store is not a public key")]
    BadNodeId,
    #[error("the stored export is damaged: {0}")]
    Damaged(String),
    #[error("encrypting the export: {0}")]
    Crypt(#[from] ExportCryptError),
    #[error("reading the node's state: {0}")]
    Fence(#[from] FenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the owner fetches an export (documented in scheduler.proto): the
/// Scheduler's DownloadExport on any manager, with the owner's certificate.
pub fn url(record: &NodeExportRecord) -> String {
    format!(
        "lnswarm-export:{}?size={}&sha256={}",
        record.node_id,
        record.size,
        hex::encode(&record.sha256)
    )
}

/// The finished export's record.
pub fn record(store: &Store, node_id: &str) -> Result<NodeExportRecord, ExportError> {
    Ok(store
        .get::<NodeExportRecord>(&keys::node_export(node_id))?
        .ok_or(ExportError::NotExported)?
        .1)
}

/// Exports `node_id` (idempotent): see the module doc.
pub async fn export(store: &Store, node_id: &str) -> Result<NodeExportRecord, ExportError> {
    store.read_barrier().await?;
    let key = keys::hosted_node(node_id);

    // 1. Exporting, not wanted: the orchestrator stops its tasks cleanly.
    let (done, _) = store
        .update("the hosted node", |store| {
            let (version, mut node) = store
                .get::<HostedNode>(&key)?
                .ok_or(ExportError::NotRegistered)?;
            if node.state == HostedNodeState::Exported as i32 {
                return Ok(Attempt::Done(Some(record(store, node_id)?)));
            }
            if node.state == HostedNodeState::Exporting as i32 && !node.desired_running {
                return Ok(Attempt::Done(None));
            }
            node.state = HostedNodeState::Exporting as i32;
            node.desired_running = false;
            node.move_to.clear();
            node.message = "exporting: stopping the node".into();
            node.since_unix_ms = now_unix_ms();
            let txn = TxnBuilder::new()
                .require_version(&key, version)
                .put_tagged(&key, &node, [keys::node_tag(node_id)])
                .build();
            Ok::<_, ExportError>(Attempt::Propose(txn, None))
        })
        .await?;
    if let Some(done) = done {
        return Ok(done);
    }
    info!(node = %node_id, "exporting: waiting for the node to stop");
    wait_stopped(store, node_id).await?;

    // 2. The fence: a new epoch that no task holds, so a copy of the node that is
    //    still alive somewhere (a cut-off agent) can never write again.
    let lease_key = keys::node_lease(node_id);
    let ((epoch, network), lease_version) = store
        .update("the node's lease", |store| {
            let (node_version, node) = store
                .get::<HostedNode>(&key)?
                .ok_or(ExportError::NotRegistered)?;
            if node.state != HostedNodeState::Exporting as i32 {
                return Err(ExportError::Concurrent);
            }
            let lease = NextLease::read(store, node_id)?;
            let epoch = lease.epoch;
            let txn = lease
                .grant(
                    TxnBuilder::new().require_version(&key, node_version),
                    "",
                    "",
                    now_unix_ms(),
                )
                .build();
            Ok(Attempt::Propose(txn, (epoch, node.network.clone())))
        })
        .await
        .map_err(|e| match e {
            // A concurrent call finished first.
            ExportError::Concurrent => {
                record(store, node_id).map_or(e, |_| ExportError::Concurrent)
            }
            e => e,
        })?;

    // 3. The state as it stands under the new epoch, encrypted to the node key.
    let (entries, _) = fence::load(store, node_id, epoch).await?;
    let exported_unix_ms = now_unix_ms();
    let count = entries.len();
    let plain = NodeExport {
        node_id: node_id.to_string(),
        network,
        entries,
        exported_unix_ms,
        epoch,
    }
    .encode_to_vec();
    let blob = node_export::encrypt_to_node(node_id, &plain).map_err(|e| match e {
        ExportCryptError::NodeId => ExportError::BadNodeId,
        e => e.into(),
    })?;
    drop(plain);
    let attempt = new_id();
    let record = NodeExportRecord {
        node_id: node_id.to_string(),
        attempt: attempt.clone(),
        size: blob.len() as u64,
        sha256: Sha256::digest(&blob).to_vec(),
        chunks: blob.chunks(CHUNK_SIZE).count() as u32,
        chunk_size: CHUNK_SIZE as u64,
        exported_unix_ms,
    };

    // 4. The chunks, each under the fence (a later epoch means another call took
    //    over), then the record and EXPORTED in one transaction.
    for (i, chunk) in blob.chunks(CHUNK_SIZE).enumerate() {
        let mut txn = TxnBuilder::new()
            .require_version(&lease_key, lease_version)
            .build();
        txn.ops.push(StoreOp {
            key: keys::node_export_chunk(node_id, &attempt, i as u32),
            value: Some(chunk.to_vec()),
            tags: vec![],
        });
        if let Applied::CheckFailed(_) = store.propose(txn).await? {
            return Err(abandon(store, node_id, &attempt).await);
        }
    }
    let finished = store
        .update("the hosted node", |store| {
            let (node_version, mut node) = store
                .get::<HostedNode>(&key)?
                .ok_or(ExportError::NotRegistered)?;
            if node.state != HostedNodeState::Exporting as i32 {
                return Err(ExportError::Concurrent);
            }
            let mut txn = TxnBuilder::new()
                .require_version(&key, node_version)
                .require_version(&lease_key, lease_version)
                .require_absent(keys::node_export(node_id))
                .put(keys::node_export(node_id), &record);
            // Chunks an interrupted earlier attempt left behind.
            let own = keys::node_export_attempt_chunks(node_id, &attempt);
            for (k, _) in store.state().scan(&keys::node_export_chunks(node_id))? {
                if !k.starts_with(&own) {
                    txn = txn.delete_tagged(k, Vec::<String>::new());
                }
            }
            node.state = HostedNodeState::Exported as i32;
            node.message = "exported".into();
            node.grpc_uri.clear();
            node.lightning_addr.clear();
            node.since_unix_ms = now_unix_ms();
            let txn = txn
                .put_tagged(&key, &node, [keys::node_tag(node_id)])
                .build();
            Ok(Attempt::Propose(txn, ()))
        })
        .await;
    match finished {
        Ok(_) => {
            info!(node = %node_id, entries = count, bytes = record.size, "node exported");
            Ok(record)
        }
        Err(ExportError::Concurrent) | Err(ExportError::Store(StoreError::Contended(_))) => {
            Err(abandon(store, node_id, &attempt).await)
        }
        Err(e) => Err(e),
    }
}

/// Removes this attempt's chunks after another call took over; the caller's
/// answer is then the other call's export, if it has finished.
async fn abandon(store: &Store, node_id: &str, attempt: &str) -> ExportError {
    let own = keys::node_export_attempt_chunks(node_id, attempt);
    let cleanup = async {
        let mut txn = TxnBuilder::new();
        for (k, _) in store.state().scan(&own)? {
            txn = txn.delete_tagged(k, Vec::<String>::new());
        }
        store.propose(txn.build()).await.map(|_| ())
    };
    if let Err(e) = cleanup.await {
        return e.into();
    }
    ExportError::Concurrent
}

/// Waits (at most [`STOP_WAIT`]) until no task of the node is live.
async fn wait_stopped(store: &Store, node_id: &str) -> Result<(), ExportError> {
    let deadline = Instant::now() + STOP_WAIT;
    let mut changes = store.state().watch().subscribe(&keys::node_tag(node_id));
    loop {
        let id = node_id.to_string();
        let running = store
            .read_off_thread(move |store| {
                Ok(store
                    .list::<Task>(keys::TASKS)?
                    .into_iter()
                    .any(|(_, t)| t.node_id == id && is_live(&t)))
            })
            .await?;
        if !running {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let message = store
                .get::<HostedNode>(&keys::hosted_node(node_id))?
                .map(|(_, n)| n.message)
                .unwrap_or_default();
            return Err(ExportError::StillRunning {
                secs: STOP_WAIT.as_secs(),
                message,
            });
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// The pieces of the export from `offset` on: (offset, bytes), at most a chunk
/// each. Reads one stored chunk per piece, as the download asks for it.
pub fn pieces(
    store: &Store,
    record: &NodeExportRecord,
    offset: u64,
) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), ExportError>>, ExportError> {
    if offset > record.size {
        return Err(ExportError::PastEnd {
            offset,
            size: record.size,
        });
    }
    let chunk_size = record.chunk_size.max(1);
    let first = (offset / chunk_size) as u32;
    let store = store.clone();
    let record = record.clone();
    Ok((first..record.chunks).map(move |i| {
        let key = keys::node_export_chunk(&record.node_id, &record.attempt, i);
        let data = store
            .state()
            .get(&key)?
            .ok_or_else(|| ExportError::Damaged(format!("chunk {i} is missing")))?
            .value;
        let start = u64::from(i) * chunk_size;
        let skip = offset.saturating_sub(start) as usize;
        if skip > data.len() {
            return Err(ExportError::Damaged(format!("chunk {i} is short")));
        }
        Ok((start + skip as u64, data[skip..].to_vec()))
    }))
}
