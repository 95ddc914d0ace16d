//! Where a hosted node keeps its state when it runs under a lease: the managers'
//! replicated store, reached over mTLS with the node's own certificate, behind
//! ldk-node's `KVStoreSync` and `KVStore` traits.
//!
//! - [`remote`]: the NodeState client (any manager; retries until an answer that is
//!   not about the cluster being busy).
//! - [`replicated`]: the store ldk-node is built with: the node's whole state in
//!   memory after one load (it is the only writer), and one ordered writer that
//!   batches whatever queued meanwhile into one fenced write.
//! - [`rebuildable`]: the namespaces that may stay on local disk.
//! - [`migrate`]: the one-time copy of a node's old local SQLite.
//! - [`lease_watch`]: the node stops itself when its agent's lease runs out.

pub mod lease_watch;
pub mod migrate;
pub mod rebuildable;
pub mod remote;
pub mod replicated;

pub use replicated::ReplicatedStore;

/// Why the replicated state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("connecting to the managers: {0}")]
    Tls(#[from] lnswarm_common::tls::TlsError),
    #[error("the managers refused this node's state: {0}")]
    Refused(String),
    #[error("the local store: {0}")]
    Local(#[from] std::io::Error),
    #[error("reading the old local state: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
