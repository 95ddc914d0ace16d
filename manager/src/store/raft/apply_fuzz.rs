//! Fuzzes the decoding of committed raft entries ([`decode`]): entries of every
//! type with arbitrary data, and mutations of valid entries (commands, membership
//! changes of both versions, a new leader's empty entry), as they come from the
//! log or an append. Each must decode or give `StoreError::Corrupt`, never panic,
//! and what decodes is what was encoded.

use std::sync::LazyLock;

use lnswarm_common::{api::StoreOp, fuzzing};
use proptest::prelude::*;
use raft::prelude::{ConfChangeType, EntryType};

use super::*;

fn entry(entry_type: EntryType, data: Vec<u8>) -> Entry {
    let mut e = Entry::default();
    e.index = 7;
    e.term = 2;
    e.set_entry_type(entry_type);
    e.data = data.into();
    e
}

fn txn() -> StoreTxn {
    StoreTxn {
        checks: vec![],
        ops: vec![StoreOp {
            key: "managers/m4".into(),
            value: Some(b"\x0a\x02m4".to_vec()),
            tags: vec![],
        }],
    }
}

/// Valid entries, encoded as the log stores them.
static ENTRIES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut v2 = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddLearnerNode);
    single.node_id = 4;
    v2.mut_changes().push(single);
    v2.context = txn().encode_to_vec().into();
    let mut v1 = ConfChange::default();
    v1.set_change_type(ConfChangeType::RemoveNode);
    v1.node_id = 3;
    v1.context = txn().encode_to_vec().into();
    [
        entry(EntryType::EntryNormal, txn().encode_to_vec()),
        entry(EntryType::EntryNormal, vec![]),
        entry(EntryType::EntryConfChangeV2, v2.write_to_bytes().unwrap()),
        entry(EntryType::EntryConfChange, v1.write_to_bytes().unwrap()),
    ]
    .iter()
    .map(|e| e.write_to_bytes().unwrap())
    .collect()
});

fn decode_entry(e: &Entry) -> Result<(), TestCaseError> {
    match decode(e) {
        Ok(Decoded::Command(txn)) => {
            prop_assert_eq!(e.get_entry_type(), EntryType::EntryNormal);
            prop_assert_eq!(
                &StoreTxn::decode(txn.encode_to_vec().as_slice()).unwrap(),
                &txn
            );
        }
        Ok(Decoded::ConfChange(cc, txn)) => {
            prop_assert_ne!(e.get_entry_type(), EntryType::EntryNormal);
            prop_assert!(
                !cc.get_changes().is_empty() || e.get_entry_type() == EntryType::EntryConfChangeV2
            );
            prop_assert_eq!(
                &StoreTxn::decode(txn.encode_to_vec().as_slice()).unwrap(),
                &txn
            );
        }
        Err(err) => prop_assert!(matches!(err, StoreError::Corrupt(_))),
    }
    Ok(())
}

fn entry_type() -> impl Strategy<Value = EntryType> {
    prop_oneof![
        Just(EntryType::EntryNormal),
        Just(EntryType::EntryConfChange),
        Just(EntryType::EntryConfChangeV2),
    ]
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn entries_of_any_type(t in entry_type(), data in fuzzing::bytes(256)) {
        decode_entry(&entry(t, data))?;
    }

    #[test]
    fn mutated_entries(bytes in fuzzing::mutated_any(ENTRIES.clone())) {
        if let Ok(e) = Entry::parse_from_bytes(&bytes) {
            decode_entry(&e)?;
        }
    }

    #[test]
    fn mutated_entry_data(i in any::<usize>(), t in entry_type(), mutations in prop::collection::vec(fuzzing::mutation(), 1..=4)) {
        // A valid entry's data, mutated, under any entry type.
        let valid = Entry::parse_from_bytes(&ENTRIES[i % ENTRIES.len()]).unwrap();
        decode_entry(&entry(t, fuzzing::apply(valid.get_data(), &mutations)))?;
    }
}

#[test]
fn the_corpus_is_valid() {
    for bytes in ENTRIES.iter() {
        let e = Entry::parse_from_bytes(bytes).unwrap();
        decode(&e).unwrap();
    }
    let v1 = Entry::parse_from_bytes(&ENTRIES[3]).unwrap();
    let Ok(Decoded::ConfChange(cc, txn)) = decode(&v1) else {
        panic!("a ConfChange entry decodes as a membership change");
    };
    assert_eq!(cc.get_changes()[0].node_id, 3);
    assert_eq!(txn.ops[0].key, "managers/m4");
}
