//! Fuzzes join-token parsing ([`JoinToken::parse`]), which reads what a joiner
//! types or sends: arbitrary text and mutations of valid tokens must give a token
//! or `MalformedToken`, never a panic, and a parsed token prints back to itself.

use proptest::prelude::*;

use super::{JoinToken, PkiError};
use crate::fuzzing;

fn valid() -> JoinToken {
    JoinToken::generate(&"ab".repeat(32))
}

/// Parsing never panics; whatever parses is canonical and parses again to itself.
fn check(s: &str) {
    match JoinToken::parse(s) {
        Ok(t) => {
            let printed = t.to_string();
            let again = JoinToken::parse(&printed).expect("a printed token parses");
            assert!(t.matches(&again), "round trip of {s:?}");
            assert_eq!(again.to_string(), printed, "canonical");
        }
        Err(e) => assert!(matches!(e, PkiError::MalformedToken), "{e}"),
    }
}

proptest! {
    #![proptest_config(fuzzing::config(2_000))]

    #[test]
    fn arbitrary_text(s in fuzzing::text(160)) {
        check(&s);
    }

    #[test]
    fn mutated_tokens(s in fuzzing::mutated_text(valid().to_string())) {
        check(&s);
    }

    #[test]
    fn generated_tokens_round_trip(digest in "[0-9a-fA-F]{64}") {
        let t = JoinToken::generate(&digest.to_ascii_lowercase());
        let parsed = JoinToken::parse(&format!("  {t}\n")).unwrap();
        prop_assert!(t.matches(&parsed));
    }
}
