//! Fuzzes opening sealed seeds ([`open`]): a registering owner sends the sealed box,
//! and managers keep it. Arbitrary bytes and mutations of a valid box (and keys of
//! any length) must give the seed or a `SealError`, never a panic; only the
//! unchanged box opens, and sealing round-trips any plaintext.

use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;
use crate::fuzzing;

static KEYS: LazyLock<([u8; 32], [u8; 32])> = LazyLock::new(new_keypair);
static SEALED: LazyLock<Vec<u8>> = LazyLock::new(|| seal(&KEYS.1, &[7u8; 64]).unwrap());

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn arbitrary_boxes(sealed in fuzzing::bytes(256)) {
        prop_assert!(open(&KEYS.0, &sealed).is_err());
    }

    #[test]
    fn mutated_boxes(sealed in fuzzing::mutated(SEALED.clone())) {
        match open(&KEYS.0, &sealed) {
            Ok(seed) => {
                prop_assert_eq!(&sealed, &*SEALED);
                prop_assert_eq!(seed, vec![7u8; 64]);
            }
            Err(e) => prop_assert!(matches!(e, SealError::Open)),
        }
    }

    #[test]
    fn keys_of_any_length(key in fuzzing::bytes(64), plaintext in fuzzing::bytes(128)) {
        let opened = open(&key, &SEALED);
        let sealed = seal(&key, &plaintext);
        if key.len() != 32 {
            prop_assert!(matches!(opened, Err(SealError::KeyLength)));
            prop_assert!(matches!(sealed, Err(SealError::KeyLength)));
        }
    }

    #[test]
    fn sealing_round_trips(plaintext in fuzzing::bytes(512)) {
        let sealed = seal(&KEYS.1, &plaintext).unwrap();
        prop_assert_eq!(open(&KEYS.0, &sealed).unwrap(), plaintext);
    }
}
