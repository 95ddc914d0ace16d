//! What the dispatcher's handlers and its leader-only work share: the state of one
//! manager's dispatcher, and the manager list sessions hand out. Its own module so
//! that the handlers (`service`) and the leader side (`leader`) both depend on it
//! rather than on each other.

use std::sync::{atomic::AtomicBool, Arc, RwLock};

use lnswarm_common::api::{Manager, WeightedPeer};

use super::{
    config::{DispatcherConfig, HeartbeatTiming},
    sessions::Sessions,
    writer::Writer,
};
use crate::store::{keys, Store, StoreError};

pub(super) struct Shared {
    pub store: Store,
    pub config: DispatcherConfig,
    pub sessions: Arc<Sessions>,
    pub writer: Writer,
    pub timing: RwLock<HeartbeatTiming>,
    /// Serving: this manager leads and the post-election work is done.
    pub active: AtomicBool,
    /// The weighted manager list sessions hand out, refreshed in one place so that
    /// sessions wake only when it changes.
    pub managers: tokio::sync::watch::Sender<Vec<WeightedPeer>>,
    /// Expiry scans run (they run only while leading).
    pub expiry_scans: std::sync::atomic::AtomicU64,
}

/// The managers an agent may connect to; the leader weighs most.
pub(super) fn managers(store: &Store) -> Result<Vec<WeightedPeer>, StoreError> {
    let leader = store.leadership().borrow().leader_id.clone();
    Ok(store
        .list::<Manager>(keys::MANAGERS)?
        .into_iter()
        .map(|(_, m)| WeightedPeer {
            weight: if leader.as_deref() == Some(m.id.as_str()) {
                100
            } else {
                10
            },
            manager_id: m.id,
            addr: m.addr,
        })
        .collect())
}
