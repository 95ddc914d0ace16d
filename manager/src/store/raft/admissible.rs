//! What raft-rs can be given without a panic. raft-rs trusts its peers: it
//! panics (or, built without overflow checks, wraps) on messages no correct peer
//! sends, such as a heartbeat committing past the follower's log, a vote request
//! at term 0, entries that do not follow the index they claim to, an empty
//! proposal, or a snapshot whose membership it cannot restore; and it panics
//! starting on a conf state it cannot hold. What another manager sends, and the conf state read from the
//! disk, is checked here first, so it is refused with an error (found by fuzzing,
//! service_fuzz.rs, snapshot_stream_fuzz.rs and storage_fuzz.rs). The checks are
//! what every correct sender already satisfies: none refuses a message raft-rs
//! itself would send.

use raft::{
    prelude::{
        ConfChangeSingle, ConfChangeType, ConfState, Message, MessageType, SnapshotMetadata,
    },
    Changer, ProgressTracker, RaftLog, Storage,
};

/// The highest log index (or term) a log, snapshot or message may hold. No log
/// reaches it (2^63 entries or elections), and raft computes `index + 1` and
/// `term + 1` freely, so a number above it is corruption or a forgery.
pub const MAX_INDEX: u64 = i64::MAX as u64;

fn single(id: u64, change_type: ConfChangeType) -> ConfChangeSingle {
    let mut cc = ConfChangeSingle::default();
    cc.node_id = id;
    cc.set_change_type(change_type);
    cc
}

/// The same members, whatever their order or repetition (as raft-rs compares).
fn same_members(a: &[u64], b: &[u64]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// `Ok` when raft-rs restores `cs` to itself; otherwise why it would not.
pub fn conf_state(cs: &ConfState) -> Result<(), String> {
    // The replay of raft-rs's confchange::restore (not public).
    let outgoing: Vec<_> = cs
        .get_voters_outgoing()
        .iter()
        .map(|id| single(*id, ConfChangeType::AddNode))
        .collect();
    let incoming: Vec<_> = cs
        .get_voters_outgoing()
        .iter()
        .map(|id| single(*id, ConfChangeType::RemoveNode))
        .chain(
            cs.get_voters()
                .iter()
                .map(|id| single(*id, ConfChangeType::AddNode)),
        )
        .chain(
            cs.get_learners()
                .iter()
                .chain(cs.get_learners_next())
                .map(|id| single(*id, ConfChangeType::AddLearnerNode)),
        )
        .collect();
    let mut tracker = ProgressTracker::new(1);
    let refused = |e: raft::Error| format!("conf state {cs:?} is refused: {e}");
    if outgoing.is_empty() {
        for cc in incoming {
            let (cfg, changes) = Changer::new(&tracker).simple(&[cc]).map_err(refused)?;
            tracker.apply_conf(cfg, changes, 1);
        }
    } else {
        for cc in outgoing {
            let (cfg, changes) = Changer::new(&tracker).simple(&[cc]).map_err(refused)?;
            tracker.apply_conf(cfg, changes, 1);
        }
        let (cfg, changes) = Changer::new(&tracker)
            .enter_joint(cs.auto_leave, &incoming)
            .map_err(refused)?;
        tracker.apply_conf(cfg, changes, 1);
    }
    let got = tracker.conf().to_conf_state();
    let same = same_members(got.get_voters(), cs.get_voters())
        && same_members(got.get_learners(), cs.get_learners())
        && same_members(got.get_voters_outgoing(), cs.get_voters_outgoing())
        && same_members(got.get_learners_next(), cs.get_learners_next())
        && got.auto_leave == cs.auto_leave;
    if !same {
        return Err(format!(
            "conf state {cs:?} is not one raft can hold (it reads as {got:?})"
        ));
    }
    Ok(())
}

/// `Ok` when raft-rs can install a snapshot with `meta`; otherwise why not.
pub fn snapshot(meta: &SnapshotMetadata) -> Result<(), String> {
    if meta.index > MAX_INDEX || meta.term > MAX_INDEX {
        return Err(format!(
            "snapshot index {} term {} is beyond any log",
            meta.index, meta.term
        ));
    }
    // Every entry has a term of at least 1, and a snapshot covers at least one
    // entry: raft-rs reads term 0 past its log as a match (and commits past its
    // end), and index 0 leaves it a next index of 0 to subtract 1 from.
    if meta.index == 0 || meta.term == 0 {
        return Err(format!(
            "snapshot at index {} term {} covers no entry",
            meta.index, meta.term
        ));
    }
    conf_state(meta.get_conf_state())
}

/// `Ok` when `m`, from another manager, is a message a correct peer could send,
/// judged without this node's state.
pub fn message(m: &Message) -> Result<(), String> {
    let kind = m.get_msg_type();
    // A manager proposes only as the leader and forwards with ForwardProposal,
    // whose command is decoded first: a proposal stepped in as a raft message
    // would put undecodable entries in the log (and an empty one panics raft-rs).
    if kind == MessageType::MsgPropose {
        return Err("proposals are forwarded with ForwardProposal".into());
    }
    // A node's messages to itself (raft-rs refuses them from peers too).
    if matches!(
        kind,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
    ) {
        return Err(format!("a {kind:?} is not sent between managers"));
    }
    // Only a forwarded read request is sent without a term.
    if m.term == 0 && kind != MessageType::MsgReadIndex {
        return Err(format!("a {kind:?} without a term"));
    }
    let numbers = [m.term, m.index, m.log_term, m.commit, m.reject_hint];
    if numbers.iter().any(|n| *n > MAX_INDEX) {
        return Err(format!("a {kind:?} beyond any log"));
    }
    if kind == MessageType::MsgAppend {
        // Only the dummy entry at index 0 has term 0.
        if (m.index == 0) != (m.log_term == 0) {
            return Err(format!(
                "an append after index {} of term {}",
                m.index, m.log_term
            ));
        }
        let mut prev_term = m.log_term;
        for (e, index) in m.get_entries().iter().zip(m.index + 1..) {
            if e.index != index || e.term < prev_term.max(1) || e.term > m.term {
                return Err(format!(
                    "an append whose entry {} (term {}) does not follow index {} of term {}",
                    e.index,
                    e.term,
                    index - 1,
                    prev_term
                ));
            }
            prev_term = e.term;
        }
    }
    if m.has_snapshot() {
        snapshot(m.get_snapshot().get_metadata())?;
    }
    Ok(())
}

/// `Ok` when `m` (already [`message`]-checked) fits this node's log: raft-rs
/// panics when a heartbeat commits past the log's end ("to_commit is out of
/// range"), which only a faulty leader sends.
pub fn fits<T: Storage>(log: &RaftLog<T>, m: &Message) -> Result<(), String> {
    let last = log.last_index();
    if m.get_msg_type() == MessageType::MsgHeartbeat && m.commit > last {
        return Err(format!(
            "a heartbeat committing {} past this log's end {last}",
            m.commit
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(voters: &[u64], learners: &[u64]) -> ConfState {
        let mut cs = ConfState::default();
        cs.voters = voters.to_vec();
        cs.learners = learners.to_vec();
        cs
    }

    #[test]
    fn what_raft_holds_is_taken_and_the_rest_refused() {
        conf_state(&ConfState::default()).unwrap();
        conf_state(&cs(&[1, 2, 3], &[4])).unwrap();
        let mut joint = cs(&[1, 2, 4], &[]);
        joint.voters_outgoing = vec![1, 2, 3];
        joint.learners_next = vec![3];
        joint.auto_leave = true;
        conf_state(&joint).unwrap();

        assert!(conf_state(&cs(&[1, 2], &[2])).is_err());
        let mut auto_leave = cs(&[1], &[]);
        auto_leave.auto_leave = true;
        assert!(conf_state(&auto_leave).is_err());
        let mut learners_next = cs(&[1], &[]);
        learners_next.learners_next = vec![2];
        assert!(conf_state(&learners_next).is_err());
    }
}
