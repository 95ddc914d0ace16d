//! The fence on a node's state: every load and write names the lease epoch its
//! process runs under, and commits only if that is still the node's epoch. The
//! check is part of the write's own transaction (it requires the lease record's
//! version as read), so a lease granted to a new task between the read and the
//! commit fails the write instead of racing it.

use lnswarm_common::api::{
    NodeLease, NodeStateEntry, NodeStateHead, NodeStateKey, NodeStateOp, StoreOp,
};

use crate::store::{keys, Attempt, Store, StoreError, TxnBuilder};

/// Most operations one write may carry.
pub const MAX_OPS_PER_WRITE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("node {node} has no lease: it is not scheduled")]
    NoLease { node: String },
    #[error(
        "epoch {given} is stale: node {node} now runs under epoch {current}; this copy must stop"
    )]
    Stale {
        node: String,
        given: u64,
        current: u64,
    },
    #[error("a write to node {node}'s state arrived out of order (left over from an earlier process); this copy must reload")]
    OutOfOrder { node: String },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("too many items in one call (at most {MAX_OPS_PER_WRITE} writes, or 1 000 peers)")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check_key(k: Option<&NodeStateKey>) -> Result<&NodeStateKey, FenceError> {
    let k = k.ok_or_else(|| FenceError::InvalidKey("missing".into()))?;
    lnswarm_common::ldk_keys::check(&k.primary, &k.secondary, &k.key)
        .map_err(FenceError::InvalidKey)?;
    Ok(k)
}

/// The node's lease, if `epoch` is current: its version, for the write's check.
pub(crate) fn current_lease(store: &Store, node_id: &str, epoch: u64) -> Result<u64, FenceError> {
    let (version, lease) = store
        .get::<NodeLease>(&keys::node_lease(node_id))?
        .ok_or_else(|| FenceError::NoLease {
            node: node_id.to_string(),
        })?;
    if lease.epoch != epoch {
        return Err(FenceError::Stale {
            node: node_id.to_string(),
            given: epoch,
            current: lease.epoch,
        });
    }
    Ok(version)
}

/// A node's next lease: the epoch after its current one, granted under a check
/// that the current one is unchanged, so two grants (two leaders, or a start and
/// an export) can never both commit. Every epoch move goes through here.
pub(crate) struct NextLease {
    node_id: String,
    previous_version: Option<u64>,
    pub epoch: u64,
}

impl NextLease {
    pub fn read(store: &Store, node_id: &str) -> Result<Self, StoreError> {
        let previous = store.get::<NodeLease>(&keys::node_lease(node_id))?;
        Ok(NextLease {
            node_id: node_id.to_string(),
            epoch: previous.as_ref().map_or(0, |(_, l)| l.epoch) + 1,
            previous_version: previous.map(|(v, _)| v),
        })
    }

    /// Adds the grant to `txn`: to `task_id` on `agent_id`, or to no task (both
    /// empty), which fences every copy.
    pub fn grant(self, txn: TxnBuilder, task_id: &str, agent_id: &str, now_ms: i64) -> TxnBuilder {
        let key = keys::node_lease(&self.node_id);
        match self.previous_version {
            Some(v) => txn.require_version(&key, v),
            None => txn.require_absent(&key),
        }
        .put(
            &key,
            &NodeLease {
                node_id: self.node_id,
                epoch: self.epoch,
                task_id: task_id.to_string(),
                agent_id: agent_id.to_string(),
                granted_unix_ms: now_ms,
            },
        )
    }
}

/// Where a write goes in the node's order (see `WriteNodeStateRequest`).
#[derive(Debug, Clone, Copy)]
pub struct WriteOrder {
    pub incarnation: u64,
    pub seq: u64,
    pub after_version: u64,
}

/// Applies `ops` in order, in one transaction, if `epoch` is the node's and the
/// write is next in its order; returns the index they committed at (again, for a
/// write that already committed).
pub async fn write(
    store: &Store,
    node_id: &str,
    epoch: u64,
    order: WriteOrder,
    ops: Vec<NodeStateOp>,
) -> Result<u64, FenceError> {
    if ops.len() > MAX_OPS_PER_WRITE {
        return Err(FenceError::TooMany);
    }
    let mut sealed = Vec::with_capacity(ops.len());
    for op in ops {
        let k = check_key(op.key.as_ref())?;
        let key = keys::node_state(node_id, &k.primary, &k.secondary, &k.key);
        let value = if op.remove {
            None
        } else {
            Some(store.seal(&key, &op.value)?)
        };
        sealed.push(StoreOp {
            key,
            value,
            tags: vec![],
        });
    }
    let lease_key = keys::node_lease(node_id);
    let head_key = keys::node_state_head(node_id);
    let head = NodeStateHead {
        incarnation: order.incarnation,
        seq: order.seq,
    };
    let (done, index) = store
        .update("the node's lease", |store| {
            let version = current_lease(store, node_id, epoch)?;
            let (head_version, current) =
                store.get::<NodeStateHead>(&head_key)?.unwrap_or_default();
            if current.incarnation == order.incarnation && current.seq >= order.seq {
                return Ok(Attempt::Done(Some(head_version)));
            }
            if head_version != order.after_version {
                return Err(FenceError::OutOfOrder {
                    node: node_id.to_string(),
                });
            }
            let txn = TxnBuilder::new().require_version(&lease_key, version);
            let txn = match head_version {
                0 => txn.require_absent(&head_key),
                v => txn.require_version(&head_key, v),
            };
            let mut txn = txn.put(&head_key, &head).build();
            txn.ops.extend(sealed.iter().cloned());
            Ok::<_, FenceError>(Attempt::Propose(txn, None))
        })
        .await?;
    Ok(done.unwrap_or(index))
}

/// Every key of the node, read linearizably, if `epoch` is the node's.
pub async fn load(
    store: &Store,
    node_id: &str,
    epoch: u64,
) -> Result<(Vec<NodeStateEntry>, u64), FenceError> {
    store.read_barrier().await?;
    current_lease(store, node_id, epoch)?;
    let head_version = store
        .state()
        .get(&keys::node_state_head(node_id))?
        .map_or(0, |v| v.version);
    let prefix = keys::node_state_prefix(node_id);
    let mut entries = Vec::new();
    for (key, v) in store.state().scan(&prefix)? {
        let Some((primary, secondary, k)) = keys::node_state_parts(&prefix, &key) else {
            return Err(StoreError::Corrupt(format!("node-state key {key}")).into());
        };
        entries.push(NodeStateEntry {
            key: Some(NodeStateKey {
                primary: primary.into(),
                secondary: secondary.into(),
                key: k.into(),
            }),
            value: store.open_sealed(&key, &v.value)?,
        });
    }
    Ok((entries, head_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, s: &str, k: &str) -> NodeStateKey {
        NodeStateKey {
            primary: p.into(),
            secondary: s.into(),
            key: k.into(),
        }
    }

    #[test]
    fn keys_follow_ldk_rules() {
        assert!(check_key(Some(&key("", "", "manager"))).is_ok());
        assert!(check_key(Some(&key("monitor_updates", "abc_1", "42"))).is_ok());
        for bad in [
            key("", "", ""),
            key("", "x", "k"),
            key("a/b", "", "k"),
            key("", "", "../k"),
            key(&"x".repeat(121), "", "k"),
        ] {
            assert!(
                matches!(check_key(Some(&bad)), Err(FenceError::InvalidKey(_))),
                "{bad:?}"
            );
        }
        assert!(check_key(None).is_err());
    }

    #[test]
    fn a_key_splits_back_into_its_parts() {
        let prefix = keys::node_state_prefix("n1");
        for (p, s, k) in [("", "", "manager"), ("monitor_updates", "ab_0", "7")] {
            let full = keys::node_state("n1", p, s, k);
            assert_eq!(keys::node_state_parts(&prefix, &full), Some((p, s, k)));
        }
    }
}
