//! Fuzzes the raft messages other managers send ([`parse_messages`], the body of
//! ProcessRaftMessage): arbitrary bytes and mutations of valid messages (appends
//! carrying commands and membership changes, heartbeats, votes, a snapshot) must
//! parse or give INVALID_ARGUMENT, never panic, and what parses a follower and a
//! leader step (after the Ready loop's own check, [`admissible::fits`]) without a
//! panic. A call with one
//! bad message is refused whole.

use std::sync::LazyLock;

use lnswarm_common::{api::StoreOp, fuzzing};
use proptest::prelude::*;
use protobuf::ProtobufEnum;
use raft::{
    prelude::{
        ConfChangeSingle, ConfChangeType, ConfState, Entry, EntryType, HardState, MessageType,
        SnapshotMetadata,
    },
    storage::MemStorage,
    RawNode,
};

use super::*;
use crate::store::raft::admissible::{self, MAX_INDEX};

fn entry(index: u64, entry_type: EntryType, data: Vec<u8>) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = 2;
    e.set_entry_type(entry_type);
    e.data = data.into();
    e
}

/// Valid messages of the kinds managers exchange.
pub(super) static MESSAGES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let txn = StoreTxn {
        checks: vec![],
        ops: vec![StoreOp {
            key: "agents/a1".into(),
            value: Some(b"\x0a\x02a1".to_vec()),
            tags: vec!["agent/a1".into()],
        }],
    };
    let mut cc = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddNode);
    single.node_id = 4;
    cc.mut_changes().push(single);
    cc.context = txn.encode_to_vec().into();
    let mut append = Message::default();
    append.set_msg_type(MessageType::MsgAppend);
    append.from = 1;
    append.to = 2;
    append.term = 2;
    append.log_term = 2;
    append.index = 5;
    append.commit = 7;
    append.set_entries(
        vec![
            entry(6, EntryType::EntryNormal, txn.encode_to_vec()),
            entry(
                7,
                EntryType::EntryConfChangeV2,
                cc.write_to_bytes().unwrap(),
            ),
            entry(8, EntryType::EntryNormal, vec![]),
        ]
        .into(),
    );
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = 1;
    heartbeat.to = 2;
    heartbeat.term = 2;
    heartbeat.commit = 5;
    heartbeat.context = b"read-7".to_vec().into();
    let mut vote = Message::default();
    vote.set_msg_type(MessageType::MsgRequestVote);
    vote.from = 3;
    vote.to = 2;
    vote.term = 3;
    vote.log_term = 2;
    vote.index = 8;
    let mut snapshot = Message::default();
    snapshot.set_msg_type(MessageType::MsgSnapshot);
    snapshot.from = 1;
    snapshot.to = 2;
    snapshot.term = 2;
    let meta = snapshot.mut_snapshot().mut_metadata();
    meta.index = 12;
    meta.term = 2;
    let mut cs = ConfState::default();
    cs.voters = vec![1, 2, 3];
    cs.learners = vec![4];
    meta.set_conf_state(cs);
    [append, heartbeat, vote, snapshot]
        .iter()
        .map(|m| m.write_to_bytes().unwrap())
        .collect()
});

/// Manager `id` of three, with log entries 1..=5 (terms 1, 1, 2, 2, 2), 3 of
/// them committed.
fn node(id: u64) -> RawNode<MemStorage> {
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    let entries: Vec<Entry> = [1, 1, 2, 2, 2]
        .iter()
        .zip(1..)
        .map(|(term, index)| {
            let mut e = entry(index, EntryType::EntryNormal, vec![]);
            e.term = *term;
            e
        })
        .collect();
    storage.wl().append(&entries).unwrap();
    let mut hs = HardState::default();
    hs.term = 2;
    hs.commit = 3;
    storage.wl().set_hardstate(hs);
    let cfg = raft::Config {
        id,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&cfg, storage, &logger).expect("a valid node")
}

/// Manager 1, elected leader at term 3 by manager 2's vote.
fn leader() -> RawNode<MemStorage> {
    let mut raw = node(1);
    raw.campaign().unwrap();
    let mut vote = Message::default();
    vote.set_msg_type(MessageType::MsgRequestVoteResponse);
    vote.from = 2;
    vote.to = 1;
    vote.term = raw.raft.term;
    raw.step(vote).unwrap();
    assert_eq!(raw.raft.state, raft::StateRole::Leader);
    raw
}

/// Gives `m` to a follower (manager 2) and to the leader as the Ready loop does
/// (what does not [`admissible::fits`] their log is dropped), and takes what raft
/// makes of it: no panic.
pub(in crate::store::raft) fn step_into_nodes(m: &Message) {
    for mut raw in [node(2), leader()] {
        if admissible::fits(&raw.raft.raft_log, m).is_err() {
            continue;
        }
        let _ = raw.step(m.clone());
        if raw.has_ready() {
            let ready = raw.ready();
            let _ = raw.advance(ready);
        }
    }
}

/// Members named from a few ids, so sets overlap.
fn members() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0u64..6, 0..4)
}

/// Snapshot metadata of any membership, index and term.
pub(in crate::store::raft) fn metadata() -> impl Strategy<Value = SnapshotMetadata> {
    (
        (members(), members(), members(), members(), any::<bool>()),
        prop_oneof![0u64..200, Just(MAX_INDEX), (u64::MAX - 2)..=u64::MAX],
        prop_oneof![0u64..5, Just(u64::MAX)],
    )
        .prop_map(
            |((voters, learners, outgoing, next, auto_leave), index, term)| {
                let mut cs = ConfState::default();
                cs.voters = voters;
                cs.learners = learners;
                cs.voters_outgoing = outgoing;
                cs.learners_next = next;
                cs.auto_leave = auto_leave;
                let mut meta = SnapshotMetadata::default();
                meta.set_conf_state(cs);
                meta.index = index;
                meta.term = term;
                meta
            },
        )
}

/// Indexes and terms near the test nodes' log (1..=5), and at the ends of the
/// range.
fn near() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..10, 1 => Just(MAX_INDEX), 1 => (u64::MAX - 1)..=u64::MAX]
}

/// A raft message of any type, its fields near the test nodes' state: entries
/// that follow its index (or not), any reject, hint, context and snapshot.
fn structured_message() -> impl Strategy<Value = Message> {
    (
        (
            prop::sample::select(MessageType::values().to_vec()),
            0u64..5,
            0u64..5,
        ),
        (near(), near(), near(), near()),
        (
            prop::bool::weighted(0.8),
            near(),
            prop::collection::vec((near(), 0u64..5), 0..4),
        ),
        (
            any::<bool>(),
            prop::option::weighted(0.2, metadata()),
            fuzzing::bytes(8),
        ),
    )
        .prop_map(|(kind, fields, appended, extra)| {
            let (msg_type, from, to) = kind;
            let (term, index, log_term, commit) = fields;
            let (follows, hint, entries) = appended;
            let (reject, snapshot, context) = extra;
            let mut m = Message::default();
            m.set_msg_type(msg_type);
            (m.from, m.to, m.term, m.index, m.log_term, m.commit) =
                (from, to, term, index, log_term, commit);
            m.reject = reject;
            m.reject_hint = hint;
            m.context = context.into();
            let entries: Vec<Entry> = entries
                .into_iter()
                .enumerate()
                .map(|(i, (at, t))| {
                    let at = if follows {
                        index.saturating_add(1 + i as u64)
                    } else {
                        at
                    };
                    let mut e = entry(at, EntryType::EntryNormal, vec![]);
                    e.term = if follows {
                        log_term.max(1).saturating_add(t).min(term)
                    } else {
                        t
                    };
                    e
                })
                .collect();
            m.set_entries(entries.into());
            if let Some(meta) = snapshot {
                m.mut_snapshot().set_metadata(meta);
            }
            m
        })
}

fn parse(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_messages(&[bytes.to_vec()]) {
        Ok(ms) => {
            prop_assert_eq!(ms.len(), 1);
            step_into_nodes(&ms[0]);
        }
        Err(status) => prop_assert_eq!(status.code(), tonic::Code::InvalidArgument),
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn arbitrary_messages(bytes in fuzzing::bytes(256)) {
        parse(&bytes)?;
    }

    #[test]
    fn mutated_messages(bytes in fuzzing::mutated_any(MESSAGES.clone())) {
        parse(&bytes)?;
    }

    #[test]
    fn structured_messages(m in structured_message()) {
        parse(&m.write_to_bytes().unwrap())?;
    }

    #[test]
    fn calls_are_all_or_none(batch in prop::collection::vec(
        prop_oneof![fuzzing::mutated_any(MESSAGES.clone()), fuzzing::bytes(32)],
        0..4,
    )) {
        let each: Result<Vec<Message>, _> = batch.iter().map(|b| parse_message(b)).collect();
        match (parse_messages(&batch), each) {
            (Ok(all), Ok(each)) => prop_assert_eq!(all, each),
            (Err(all), Err(first)) => prop_assert_eq!(all.message(), first.message()),
            (all, each) => prop_assert!(false, "a call gave {all:?} for messages {each:?}"),
        }
    }

    #[test]
    fn forwarded_conf_changes(bytes in prop_oneof![
        fuzzing::bytes(128),
        fuzzing::mutated(Entry::parse_from_bytes(
            &Message::parse_from_bytes(&MESSAGES[0]).unwrap().get_entries()[1]
                .write_to_bytes()
                .unwrap(),
        ).unwrap().data.to_vec()),
    ]) {
        // ForwardProposal's conf_change, and its context as a command.
        if let Ok(cc) = ConfChangeV2::parse_from_bytes(&bytes) {
            let _ = StoreTxn::decode(cc.get_context());
            let again = ConfChangeV2::parse_from_bytes(&cc.write_to_bytes().unwrap()).unwrap();
            prop_assert_eq!(again, cc);
        }
    }
}

#[test]
fn the_corpus_is_valid() {
    let ms = parse_messages(&MESSAGES[..3]).unwrap();
    assert_eq!(ms[0].get_entries().len(), 3);
    // The snapshot (a seed for mutations) comes only by StreamRaftSnapshot.
    assert!(refused(&corpus(3)).contains("StreamRaftSnapshot"));
    let mut follower = node(2);
    for m in &ms {
        admissible::fits(&follower.raft.raft_log, m).unwrap();
    }
    // The append is one the follower takes.
    follower.step(ms[0].clone()).unwrap();
    assert_eq!(follower.raft.raft_log.last_index(), 8);
    assert_eq!(follower.raft.raft_log.committed, 7);
}

fn corpus(i: usize) -> Message {
    Message::parse_from_bytes(&MESSAGES[i]).unwrap()
}

fn refused(m: &Message) -> String {
    let status = parse_messages(&[m.write_to_bytes().unwrap()]).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    status.message().to_string()
}

/// Found by `mutated_messages` and `structured_messages` once parsed messages
/// were stepped: raft-rs panicked on a vote request at term 0 ("term should be
/// set when sending MsgRequestVoteResponse"), on appends whose entries do not
/// follow the index they claim to ("entry 1 conflict with committed entry 3",
/// "unstable.slice[6, 7] out of bound[6, 6]"), and on a term at u64::MAX (its
/// next election overflowed). Such messages are refused as INVALID_ARGUMENT.
#[test]
fn regression_messages_no_correct_peer_sends_are_refused() {
    let mut vote = corpus(2);
    vote.term = 0;
    assert!(refused(&vote).contains("without a term"));
    let mut gap = corpus(0);
    gap.mut_entries()[1].index = 9;
    assert!(refused(&gap).contains("does not follow"));
    let mut untermed = corpus(0);
    untermed.log_term = 0;
    assert!(refused(&untermed).contains("an append after index 5 of term 0"));
    let mut beyond = corpus(1);
    beyond.commit = u64::MAX;
    assert!(refused(&beyond).contains("beyond any log"));
    let mut last_term = corpus(2);
    last_term.term = u64::MAX;
    assert!(refused(&last_term).contains("beyond any log"));
    // An empty proposal panicked the leader ("stepped empty MsgProp"); a full
    // one would have put its entries in the log undecoded.
    let mut proposal = corpus(0);
    proposal.set_msg_type(MessageType::MsgPropose);
    assert!(refused(&proposal).contains("ForwardProposal"));
    proposal.mut_entries().clear();
    assert!(refused(&proposal).contains("ForwardProposal"));
}

/// Found the same way: a heartbeat committing past the follower's log panicked
/// raft-rs ("to_commit 12 is out of range [last_index 0]"). The Ready loop drops
/// it; one within the log is stepped.
#[test]
fn regression_a_heartbeat_past_the_log_is_dropped() {
    let follower = node(2);
    let mut heartbeat = corpus(1);
    heartbeat.commit = 6;
    assert!(admissible::fits(&follower.raft.raft_log, &heartbeat)
        .unwrap_err()
        .contains("past this log's end 5"));
    heartbeat.commit = 5;
    admissible::fits(&follower.raft.raft_log, &heartbeat).unwrap();
}
