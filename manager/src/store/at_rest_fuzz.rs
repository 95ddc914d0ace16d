//! Fuzzes what reads secrets at rest (issue 18): sealed store values
//! ([`DataKey::open`], read from the raft log, snapshots and the state machine),
//! the operator's unlock key ([`UnlockKey::parse`]) and the data key file
//! ([`parse_key_file`], then [`StoredKey::unlock`]). Arbitrary and mutated inputs
//! must give a value or an `AtRestError`, never panic; only an unchanged sealed
//! value opens, and only for its own store key.

use std::sync::LazyLock;

use lnswarm_common::fuzzing;
use proptest::prelude::*;

use super::*;

const AAD: &str = "secrets/seed-02aa";
const PLAIN: &[u8] = b"sixty-four bytes of seed, or any secret the store keeps sealed..";

static KEY: LazyLock<DataKey> = LazyLock::new(DataKey::generate);
static UNLOCK: LazyLock<UnlockKey> = LazyLock::new(UnlockKey::generate);
static SEALED: LazyLock<Vec<u8>> = LazyLock::new(|| KEY.seal(AAD, PLAIN));

fn key_file_text(unlock: Option<&UnlockKey>) -> String {
    let file = match unlock {
        None => KeyFile {
            key_id: KEY.id(),
            key: Some(B64.encode(KEY.bytes())),
            wrapped: None,
        },
        Some(u) => KeyFile {
            key_id: KEY.id(),
            key: None,
            wrapped: Some(B64.encode(u.wrapping_key().seal(WRAP_AAD, KEY.bytes()))),
        },
    };
    serde_json::to_string_pretty(&file).expect("JSON serializes")
}

static KEY_FILES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    vec![
        key_file_text(None).into_bytes(),
        key_file_text(Some(&UNLOCK)).into_bytes(),
    ]
});

/// Opens `stored` for [`AAD`] and another key: only the value sealed for AAD
/// opens, and to what was sealed.
fn open_value(stored: &[u8]) -> Result<(), TestCaseError> {
    match KEY.open(AAD, stored) {
        Ok(plain) if is_sealed(stored) => {
            prop_assert_eq!(stored, &SEALED[..]);
            prop_assert_eq!(plain, PLAIN);
        }
        // Written in the clear by an older version: returned as it is.
        Ok(plain) => prop_assert_eq!(plain, stored),
        Err(e) => prop_assert!(matches!(e, AtRestError::Open)),
    }
    if is_sealed(stored) {
        prop_assert!(KEY.open("secrets/other", stored).is_err());
    }
    Ok(())
}

/// Reads `text` as the key file; what reads unlocks only to the cluster's key.
fn read_key_file(text: &str) -> Result<(), TestCaseError> {
    let Ok(stored) = parse_key_file(text) else {
        return Ok(());
    };
    for unlock in [None, Some(&*UNLOCK), Some(&UnlockKey::generate())] {
        if let Ok(key) = stored.unlock(unlock) {
            prop_assert_eq!(key.bytes(), KEY.bytes());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn arbitrary_stored_values(stored in prop_oneof![
        fuzzing::bytes(128),
        // Past the magic prefix, to reach the cipher.
        fuzzing::bytes(96).prop_map(|b| [MAGIC, &b].concat()),
    ]) {
        open_value(&stored)?;
    }

    #[test]
    fn mutated_sealed_values(stored in fuzzing::mutated(SEALED.clone())) {
        open_value(&stored)?;
    }

    #[test]
    fn unlock_keys(text in prop_oneof![
        fuzzing::text(96),
        fuzzing::mutated_text(UNLOCK.display().to_string()),
    ]) {
        if let Ok(key) = UnlockKey::parse(&text) {
            // What parses is the key it spells: it displays back as the text did.
            prop_assert_eq!(
                key.display().to_ascii_lowercase(),
                text.trim().to_ascii_lowercase()
            );
        }
    }

    #[test]
    fn key_files(text in prop_oneof![
        fuzzing::text(256),
        fuzzing::mutated_any(KEY_FILES.clone())
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        read_key_file(&text)?;
    }
}

#[test]
fn the_corpus_is_valid() {
    assert_eq!(KEY.open(AAD, &SEALED).unwrap(), PLAIN);
    assert_eq!(
        UnlockKey::parse(&UNLOCK.display()).unwrap().bytes(),
        UNLOCK.bytes()
    );
    let plain = parse_key_file(&key_file_text(None)).unwrap();
    assert_eq!(plain.unlock(None).unwrap().bytes(), KEY.bytes());
    let locked = parse_key_file(&key_file_text(Some(&UNLOCK))).unwrap();
    assert!(matches!(locked.unlock(None), Err(AtRestError::Locked)));
    assert_eq!(locked.unlock(Some(&UNLOCK)).unwrap().bytes(), KEY.bytes());
}
