//! Fuzzes the streamed snapshot ([`Reassembly`], and [`chunks`], the sender's
//! split): arbitrary and mutated first chunks, snapshot metadata of any
//! membership, index and term, chunk sequences of any shape and mutated state
//! blobs must reassemble or give a `SnapshotStreamError`, never panic. What
//! reassembles is the state the state machine restores at the snapshot's index,
//! and a follower and a leader step it without a panic. A snapshot split by the
//! sender, in chunks of any size, reassembles to the message that was sent.

use std::sync::LazyLock;

use lnswarm_common::{
    api::{StoreOp, StoreSnapshot},
    fuzzing,
};
use proptest::prelude::*;
use prost::Message as _;
use raft::prelude::{ConfState, Snapshot, SnapshotMetadata};

use super::*;
use crate::store::raft::service::fuzz::{metadata, step_into_nodes};

const INDEX: u64 = 120;

/// A state machine's state at `index`: a few objects, values versioned.
fn state_at(index: u64) -> Vec<u8> {
    StoreSnapshot {
        applied_index: index,
        entries: (0..12u64)
            .map(|i| {
                let mut value = i.to_be_bytes().to_vec();
                value.extend(std::iter::repeat_n(i as u8, 200));
                StoreOp {
                    key: format!("tasks/t{i}"),
                    value: Some(value),
                    tags: vec![],
                }
            })
            .collect(),
    }
    .encode_to_vec()
}

/// A snapshot message as the leader sends it (data included).
static SNAPSHOT: LazyLock<Message> = LazyLock::new(|| {
    let mut snap = Snapshot::default();
    snap.data = state_at(INDEX).into();
    let meta = snap.mut_metadata();
    meta.index = INDEX;
    meta.term = 3;
    let mut cs = ConfState::default();
    cs.voters = vec![1, 2, 3];
    meta.set_conf_state(cs);
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    m.from = 1;
    m.to = 2;
    m.term = 3;
    m.set_snapshot(snap);
    m
});

/// The first chunk's message: the snapshot message with its data taken out.
static HEADER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    chunks(SNAPSHOT.clone(), usize::MAX).unwrap()[0]
        .message
        .clone()
});

fn chunk(message: Vec<u8>, data: Vec<u8>) -> SnapshotChunk {
    SnapshotChunk { message, data }
}

/// The first chunk of a snapshot with `meta`.
fn header_with(meta: SnapshotMetadata) -> Vec<u8> {
    let mut m = Message::parse_from_bytes(&HEADER).unwrap();
    m.mut_snapshot().set_metadata(meta);
    m.write_to_bytes().unwrap()
}

/// A stream starting with `header` and carrying a valid state at the snapshot's
/// own index: what starts, finishes, and raft steps it without a panic.
fn stream_of(header: Vec<u8>) -> Result<(), TestCaseError> {
    let mut r = match Reassembly::start(chunk(header, vec![])) {
        Ok(r) => r,
        Err(e) => {
            prop_assert!(!matches!(e, SnapshotStreamError::State(_)), "{e}");
            return Ok(());
        }
    };
    let index = r.message.get_snapshot().get_metadata().index;
    r.push(chunk(vec![], state_at(index))).unwrap();
    let m = r.finish();
    prop_assert!(m.is_ok(), "{:?}", m.err());
    let m = m.unwrap();
    prop_assert_eq!(m.get_msg_type(), MessageType::MsgSnapshot);
    step_into_nodes(&m);
    Ok(())
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn first_chunks(message in prop_oneof![
        fuzzing::bytes(128),
        fuzzing::mutated(HEADER.clone()),
    ]) {
        stream_of(message)?;
    }

    #[test]
    fn snapshot_metadata(meta in metadata()) {
        stream_of(header_with(meta))?;
    }

    #[test]
    fn chunk_sequences(chunks in prop::collection::vec(
        (prop_oneof![4 => Just(vec![]), 1 => fuzzing::bytes(8)], fuzzing::bytes(64)),
        0..8,
    )) {
        let mut r = Reassembly::start(chunk(HEADER.clone(), vec![])).unwrap();
        let mut expected = Vec::new();
        for (i, (message, data)) in chunks.iter().enumerate() {
            match r.push(chunk(message.clone(), data.clone())) {
                Ok(()) => {
                    prop_assert!(message.is_empty());
                    expected.extend_from_slice(data);
                }
                Err(e) => {
                    prop_assert!(!message.is_empty());
                    prop_assert!(matches!(e, SnapshotStreamError::LateMessage(n) if n == i + 1));
                    return Ok(());
                }
            }
        }
        match r.finish() {
            Ok(m) => prop_assert_eq!(m.get_snapshot().get_data(), &expected[..]),
            Err(e) => prop_assert!(matches!(e, SnapshotStreamError::State(_)), "{e}"),
        }
    }

    #[test]
    fn snapshot_states(data in fuzzing::mutated(state_at(INDEX)), size in 1usize..4096) {
        let mut m = SNAPSHOT.clone();
        m.mut_snapshot().data = data.clone().into();
        let mut stream = chunks(m, size).unwrap().into_iter();
        let mut r = Reassembly::start(stream.next().unwrap()).unwrap();
        for c in stream {
            r.push(c).unwrap();
        }
        let restorable = crate::store::decode_snapshot(&data, INDEX).is_ok();
        match r.finish() {
            Ok(m) => {
                prop_assert!(restorable);
                prop_assert_eq!(m.get_snapshot().get_data(), &data[..]);
            }
            Err(e) => {
                prop_assert!(!restorable);
                prop_assert!(matches!(e, SnapshotStreamError::State(_)), "{e}");
            }
        }
    }

    #[test]
    fn split_snapshots_reassemble(size in prop_oneof![1usize..64, 64usize..4096]) {
        let mut stream = chunks(SNAPSHOT.clone(), size).unwrap().into_iter();
        let mut r = Reassembly::start(stream.next().unwrap()).unwrap();
        for c in stream {
            prop_assert!(c.data.len() <= size);
            r.push(c).unwrap();
        }
        prop_assert_eq!(&r.finish().unwrap(), &*SNAPSHOT);
    }
}

#[test]
fn a_stream_of_something_else_is_refused() {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    let bytes = m.write_to_bytes().unwrap();
    assert!(matches!(
        Reassembly::start(chunk(bytes, vec![])),
        Err(SnapshotStreamError::NotSnapshot(MessageType::MsgAppend))
    ));
    let with_data = SNAPSHOT.write_to_bytes().unwrap();
    assert!(matches!(
        Reassembly::start(chunk(with_data, vec![])),
        Err(SnapshotStreamError::DataInMessage)
    ));
}

/// Found once reassembled snapshots were stepped into raft (`first_chunks`,
/// `snapshot_metadata`): raft-rs panicked on a snapshot at term 0 (it took it for
/// one it held and committed past its log: "to_commit 120 is out of range"), at
/// index 0 ("attempt to subtract with overflow"), at the last u64 index, and on
/// one whose membership it cannot restore (`auto_leave` outside a joint
/// configuration: "invalid restore", first seen for a conf state on disk in
/// storage_fuzz.rs). Each is refused before raft sees it.
#[test]
fn regression_a_snapshot_raft_cannot_install_is_refused() {
    let refusal = |change: &dyn Fn(&mut SnapshotMetadata)| {
        let mut meta = SNAPSHOT.get_snapshot().get_metadata().clone();
        change(&mut meta);
        match Reassembly::start(chunk(header_with(meta), vec![])) {
            Err(SnapshotStreamError::Inadmissible(e)) => e,
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    };
    assert!(refusal(&|m| m.term = 0).contains("covers no entry"));
    assert!(refusal(&|m| m.index = 0).contains("covers no entry"));
    assert!(refusal(&|m| m.index = u64::MAX).contains("beyond any log"));
    assert!(refusal(&|m| m.mut_conf_state().auto_leave = true).contains("not one raft can hold"));
}

/// A snapshot whose state is not the state at its index (see
/// `decode_snapshot`) is refused when the stream ends, before raft installs it
/// (installing it would stop the raft node).
#[test]
fn a_snapshot_of_another_state_is_refused() {
    let mut r = Reassembly::start(chunk(HEADER.clone(), vec![])).unwrap();
    r.push(chunk(vec![], state_at(INDEX - 1))).unwrap();
    assert!(matches!(
        r.finish(),
        Err(SnapshotStreamError::State(StoreError::Corrupt(e))) if e.contains("given as index 120")
    ));
}
