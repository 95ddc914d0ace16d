//! Fuzzes what the raft log reads from disk: log records ([`decode_record`]) and a
//! whole store opened from fuzzed bytes ([`SledStorage::open`]: hard state,
//! snapshot metadata, log records under any key). Each must decode or give
//! `StoreError::Corrupt`, never panic; records round-trip, and a log that opens is
//! consecutive from the snapshot point.

use std::sync::LazyLock;

use lnswarm_common::fuzzing;
use proptest::prelude::*;

use super::*;

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = term;
    e.data = format!("command {index}").into_bytes().into();
    e
}

static RECORD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    encode_record(&(1..=5).map(|i| entry(i, 1 + i / 3)).collect::<Vec<_>>()).unwrap()
});

static HARD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut hs = HardState::default();
    hs.term = 2;
    hs.vote = 1;
    hs.commit = 4;
    hs.write_to_bytes().unwrap()
});

static CONF: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut cs = ConfState::default();
    cs.voters = vec![1, 2, 3];
    cs.learners = vec![4];
    cs.write_to_bytes().unwrap()
});

static SNAP_META: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut m = SnapshotMetadata::default();
    m.index = 2;
    m.term = 1;
    m.write_to_bytes().unwrap()
});

/// What a fuzzed store holds on disk.
#[derive(Debug, Clone, Default)]
struct Disk {
    hard_state: Option<Vec<u8>>,
    snapshot_meta: Option<Vec<u8>>,
    /// (key, record) pairs in the first generation tree.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    /// The state machine's applied index.
    applied: Option<u64>,
    /// The conf state, beside the applied index.
    conf_state: Option<Vec<u8>>,
}

fn record_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(1u64.to_be_bytes().to_vec()),
        3 => edge().prop_map(|i| i.to_be_bytes().to_vec()),
        1 => fuzzing::bytes(10),
    ]
}

/// Indexes and terms, near the ends of the range more often than not.
fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..16, (u64::MAX - 3)..=u64::MAX, any::<u64>()]
}

/// A well-formed record of entries with any indexes and terms.
fn any_record() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((edge(), edge()), 1..4).prop_map(|es| {
        encode_record(&es.into_iter().map(|(i, t)| entry(i, t)).collect::<Vec<_>>()).unwrap()
    })
}

fn any_snapshot_meta() -> impl Strategy<Value = Vec<u8>> {
    (edge(), edge()).prop_map(|(index, term)| {
        let mut m = SnapshotMetadata::default();
        m.index = index;
        m.term = term;
        m.write_to_bytes().unwrap()
    })
}

fn disk() -> impl Strategy<Value = Disk> {
    (
        prop::option::of(prop_oneof![
            fuzzing::mutated(HARD.clone()),
            fuzzing::bytes(16)
        ]),
        prop::option::of(prop_oneof![
            fuzzing::mutated(SNAP_META.clone()),
            any_snapshot_meta(),
            fuzzing::bytes(16)
        ]),
        prop::collection::vec(
            (
                record_key(),
                prop_oneof![
                    2 => Just(RECORD.clone()),
                    4 => fuzzing::mutated(RECORD.clone()),
                    2 => any_record(),
                    1 => fuzzing::bytes(64)
                ],
            ),
            0..3,
        ),
        prop::option::of(edge()),
        prop::option::of(prop_oneof![
            fuzzing::mutated(CONF.clone()),
            fuzzing::bytes(16)
        ]),
    )
        .prop_map(
            |(hard_state, snapshot_meta, records, applied, conf_state)| Disk {
                hard_state,
                snapshot_meta,
                records,
                applied,
                conf_state,
            },
        )
}

/// The state machine of a store holding `d`, opened as at startup.
fn write_disk(d: &Disk) -> StateMachine {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let meta = db.open_tree("raft_meta").unwrap();
    if let Some(h) = &d.hard_state {
        meta.insert(HARD_STATE, h.as_slice()).unwrap();
    }
    if let Some(s) = &d.snapshot_meta {
        meta.insert(SNAPSHOT_META, s.as_slice()).unwrap();
    }
    let tree = db.open_tree(gen_tree_name(0)).unwrap();
    for (k, v) in &d.records {
        tree.insert(k.as_slice(), v.as_slice()).unwrap();
    }
    let sm = StateMachine::open(db.clone()).unwrap();
    if let Some(a) = d.applied {
        sm.meta_put(b"applied_index", &a.to_be_bytes()).unwrap();
    }
    if let Some(cs) = &d.conf_state {
        sm.meta_put(CONF_STATE, cs).unwrap();
    }
    // Opened again, as at startup, to read the applied index written above.
    StateMachine::open(db).unwrap()
}

/// Opens a store holding `d` and starts raft on it: it opens and starts, or
/// gives `StoreError::Corrupt`, never a panic.
fn open_disk(d: &Disk) -> Result<(), TestCaseError> {
    match SledStorage::open(write_disk(d)) {
        Ok(s) => {
            let first = s.first_index().unwrap();
            let last = s.last_index().unwrap();
            prop_assert!(first <= last.saturating_add(1));
            if last >= first {
                let got = s.entries_in(first, last + 1).unwrap();
                for (e, i) in got.iter().zip(first..) {
                    prop_assert_eq!(e.index, i);
                }
                prop_assert!(got.windows(2).all(|w| w[0].term <= w[1].term));
            }
            // What opens, raft starts on (as Node::new does), without a panic.
            start_raft(s)?;
        }
        Err(e) => prop_assert!(matches!(e, StoreError::Corrupt(_)), "{e}"),
    }
    Ok(())
}

/// Starts a raft node on `storage` as Node::new does: it starts or gives an
/// error (an unreadable conf state, say), never a panic.
fn start_raft(mut storage: SledStorage) -> Result<(), TestCaseError> {
    let applied = storage.sm.applied_index();
    if let Err(e) = storage.prepare_start(applied) {
        prop_assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        return Ok(());
    }
    let cfg = raft::Config {
        id: 1,
        applied,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let _ = raft::RawNode::new(&cfg, storage, &logger);
    Ok(())
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn records(raw in prop_oneof![fuzzing::bytes(128), fuzzing::mutated(RECORD.clone())]) {
        if let Ok(entries) = decode_record(&raw) {
            let again = encode_record(&entries).unwrap();
            prop_assert_eq!(decode_record(&again).unwrap(), entries);
        }
    }

    #[test]
    fn raft_state(raw in prop_oneof![
        fuzzing::bytes(64),
        fuzzing::mutated(HARD.clone()),
        fuzzing::mutated(SNAP_META.clone()),
    ]) {
        let _ = HardState::parse_from_bytes(&raw);
        let _ = SnapshotMetadata::parse_from_bytes(&raw);
        let _ = ConfState::parse_from_bytes(&raw);
    }
}

proptest! {
    // Each case opens a store: fewer of them.
    #![proptest_config(fuzzing::config(200))]

    #[test]
    fn stores_opened_from_fuzzed_disks(d in disk()) {
        open_disk(&d)?;
    }
}

#[test]
fn the_corpus_is_valid() {
    assert_eq!(decode_record(&RECORD).unwrap().len(), 5);
    let d = Disk {
        hard_state: Some(HARD.clone()),
        snapshot_meta: Some(SNAP_META.clone()),
        records: vec![(1u64.to_be_bytes().to_vec(), RECORD.clone())],
        applied: Some(3),
        conf_state: Some(CONF.clone()),
    };
    let mut s = SledStorage::open(write_disk(&d)).unwrap();
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (3, 5));
    s.prepare_start(3).unwrap();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let cfg = raft::Config {
        id: 1,
        applied: 3,
        ..Default::default()
    };
    let raw = raft::RawNode::new(&cfg, s, &logger).unwrap();
    assert_eq!(raw.raft.raft_log.committed, 4);
}

/// The error `d` gives when raft is readied to start on it.
fn start_error(d: &Disk) -> String {
    let sm = write_disk(d);
    let applied = sm.applied_index();
    match SledStorage::open(sm).and_then(|mut s| s.prepare_start(applied)) {
        Err(StoreError::Corrupt(e)) => e,
        other => panic!("expected a corrupt store, got {:?}", other.map(|_| ())),
    }
}

/// Found by `stores_opened_from_fuzzed_disks` once it started raft: a hard state
/// whose commit index is past the log's end (here, a log with no entries) made
/// raft-rs panic at startup ("hs.commit 4 is out of range [0, 0]"). It is
/// refused as corrupt.
#[test]
fn regression_a_commit_index_past_the_log_is_refused() {
    let d = Disk {
        hard_state: Some(HARD.clone()),
        ..Default::default()
    };
    assert!(start_error(&d).contains("commit index 4 is outside the log"));
}

/// Found the same way: a commit index below the compaction point ("hs.commit 0
/// is out of range [1, 1]"), and an applied index past the commit index, panicked
/// raft-rs at startup.
#[test]
fn regression_commit_and_applied_indexes_outside_the_log_are_refused() {
    let mut hs = HardState::default();
    hs.term = 2;
    let d = Disk {
        hard_state: Some(hs.write_to_bytes().unwrap()),
        snapshot_meta: Some(SNAP_META.clone()),
        ..Default::default()
    };
    assert!(start_error(&d).contains("commit index 0 is outside the log"));
    let d = Disk {
        hard_state: Some(HARD.clone()),
        records: vec![(1u64.to_be_bytes().to_vec(), RECORD.clone())],
        applied: Some(9),
        ..Default::default()
    };
    assert!(start_error(&d).contains("applied index 9 is outside the committed log"));
}

/// Found by `stores_opened_from_fuzzed_disks`: a log on disk
/// reaching the last u64 index (the snapshot point just below it, a record holding
/// that index twice) panicked opening it ("attempt to add with overflow"). An
/// index beyond any real log is refused as corrupt.
#[test]
fn regression_a_log_at_the_last_index_is_refused_without_overflow() {
    let mut m = SnapshotMetadata::default();
    m.index = u64::MAX - 1;
    m.term = 1;
    let record = encode_record(&[entry(u64::MAX, 1), entry(u64::MAX, 1)]).unwrap();
    let at_end = Disk {
        hard_state: None,
        snapshot_meta: Some(m.write_to_bytes().unwrap()),
        records: vec![(u64::MAX.to_be_bytes().to_vec(), record.clone())],
        ..Default::default()
    };
    open_disk(&at_end).unwrap();
    // The entries alone, after a normal snapshot point.
    let entries_at_end = Disk {
        snapshot_meta: None,
        ..at_end
    };
    open_disk(&entries_at_end).unwrap();
    // The first index after the snapshot point would be past the last u64.
    m.index = u64::MAX;
    let snapshot_at_end = Disk {
        hard_state: None,
        snapshot_meta: Some(m.write_to_bytes().unwrap()),
        ..Default::default()
    };
    open_disk(&snapshot_at_end).unwrap();
    let sm = StateMachine::open(sled::Config::new().temporary(true).open().unwrap()).unwrap();
    sm.db()
        .open_tree("raft_meta")
        .unwrap()
        .insert(SNAPSHOT_META, m.write_to_bytes().unwrap())
        .unwrap();
    assert!(matches!(
        SledStorage::open(sm),
        Err(StoreError::Corrupt(e)) if e.contains("beyond any log")
    ));
}
