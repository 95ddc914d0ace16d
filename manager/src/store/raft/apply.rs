//! Turning committed raft entries into state machine changes, shared by the Ready
//! loop and by `--force-new-cluster` recovery. A normal entry's data is a
//! `StoreTxn`; a membership change carries its store writes (the managers/<id>
//! record, a revoked certificate) in its context, applied in the same transaction as
//! the new conf state.

use lnswarm_common::api::StoreTxn;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeSingle, ConfChangeV2, ConfState, Entry, EntryType};
use tracing::info;

use super::storage::{SledStorage, CONF_STATE};
use crate::store::{Applied, StateMachine, StoreError};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// What a committed entry is.
pub enum Decoded {
    /// A command (possibly empty: a new leader's no-op).
    Command(StoreTxn),
    /// A membership change and the store writes that go with it.
    ConfChange(ConfChangeV2, StoreTxn),
}

pub fn decode(entry: &Entry) -> Result<Decoded, StoreError> {
    match entry.get_entry_type() {
        EntryType::EntryNormal => Ok(Decoded::Command(if entry.data.is_empty() {
            StoreTxn::default()
        } else {
            StoreTxn::decode(entry.get_data()).map_err(corrupt)?
        })),
        EntryType::EntryConfChangeV2 => {
            let cc = ConfChangeV2::parse_from_bytes(entry.get_data()).map_err(corrupt)?;
            let txn = StoreTxn::decode(cc.get_context()).map_err(corrupt)?;
            Ok(Decoded::ConfChange(cc, txn))
        }
        EntryType::EntryConfChange => {
            let cc = ConfChange::parse_from_bytes(entry.get_data()).map_err(corrupt)?;
            let txn = StoreTxn::decode(cc.get_context()).map_err(corrupt)?;
            let mut single = ConfChangeSingle::default();
            single.set_change_type(cc.get_change_type());
            single.node_id = cc.node_id;
            let mut v2 = ConfChangeV2::default();
            v2.mut_changes().push(single);
            Ok(Decoded::ConfChange(v2, txn))
        }
    }
}

/// Applies a command, or a membership change's writes with the conf state that
/// resulted from it.
pub fn apply_txn(
    sm: &StateMachine,
    index: u64,
    txn: &StoreTxn,
    conf_state: Option<&ConfState>,
) -> Result<Applied, StoreError> {
    let meta = match conf_state {
        Some(cs) => Some((CONF_STATE, cs.write_to_bytes().map_err(corrupt)?)),
        None => None,
    };
    sm.apply_with_meta(index, txn, meta)
}

/// `--force-new-cluster`: applies every entry in this manager's log (as a leader
/// elected with this log would have committed them; an acknowledged write may be
/// here without this follower having learned it was committed) and makes this
/// manager the only voter. Every committed change is kept.
pub fn force_new_cluster(
    sm: &StateMachine,
    storage: &mut SledStorage,
    raft_id: u64,
) -> Result<(), StoreError> {
    let last = storage.last();
    let applied = sm.applied_index();
    for entry in storage.entries_in(applied + 1, last + 1)? {
        let txn = match decode(&entry)? {
            Decoded::Command(t) | Decoded::ConfChange(_, t) => t,
        };
        apply_txn(sm, entry.index, &txn, None)?;
    }
    storage.set_commit(last)?;
    let mut cs = ConfState::default();
    cs.voters = vec![raft_id];
    storage.set_conf_state(&cs)?;
    sm.db().flush()?;
    info!(raft_id, last, "forced a new one-member cluster");
    Ok(())
}

#[cfg(test)]
#[path = "apply_fuzz.rs"]
mod fuzz;
