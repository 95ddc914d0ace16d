//! What every crate's decoder fuzz tests share (issue 18): cargo-fuzz needs a
//! nightly toolchain, so decoders are fuzzed with proptest on stable, in the normal
//! test suite. This module sizes the runs and makes structured mutations of valid
//! inputs (bytes flipped, set, removed, inserted, duplicated; truncated; extended),
//! which reach deeper into a decoder than random bytes do.
//!
//! Each property runs its default number of cases, times `LNSWARM_FUZZ_SCALE` when
//! it is set (the long run in docs/DESIGN.md, "Fuzzing"). Built for tests only: the crates
//! enable the `fuzzing` feature in their dev-dependencies.

use proptest::{prelude::*, test_runner::Config};

/// A position in an input, taken modulo its length when applied.
type Index = usize;

/// The environment variable that multiplies every property's case count.
pub const SCALE_VAR: &str = "LNSWARM_FUZZ_SCALE";

/// The multiplier from [`SCALE_VAR`] (1 when unset or unreadable).
pub fn scale() -> u32 {
    std::env::var(SCALE_VAR)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// A proptest configuration running `default_cases` × [`scale`] cases. Failures are
/// not persisted to files: a crash found becomes a named regression test instead.
pub fn config(default_cases: u32) -> Config {
    Config {
        cases: default_cases.saturating_mul(scale()),
        failure_persistence: None,
        // A failing case is shrunk, but not for longer than a test run can wait.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// Up to `max` arbitrary bytes.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// One structured change to an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Remove(Index, usize),
    Insert(Index, Vec<u8>),
    Duplicate(Index, usize),
    Truncate(Index),
    Extend(Vec<u8>),
}

/// One arbitrary [`Mutation`].
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<usize>(), bytes(16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => bytes(64).prop_map(Mutation::Extend),
    ]
}

/// `input` with `mutations` applied in order.
pub fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut v = input.to_vec();
    for m in mutations {
        // Positions are taken against the current length (0 for an empty input).
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::FlipBit(i, bit) if !v.is_empty() => {
                let p = at(i, v.len());
                v[p] ^= 1 << bit;
            }
            Mutation::SetByte(i, b) if !v.is_empty() => {
                let p = at(i, v.len());
                v[p] = *b;
            }
            Mutation::Remove(i, n) if !v.is_empty() => {
                let p = at(i, v.len());
                let end = (p + n).min(v.len());
                v.drain(p..end);
            }
            Mutation::Insert(i, bytes) => {
                let p = at(i, v.len() + 1);
                v.splice(p..p, bytes.iter().copied());
            }
            Mutation::Duplicate(i, n) if !v.is_empty() => {
                let p = at(i, v.len());
                let end = (p + n).min(v.len());
                let copy: Vec<u8> = v[p..end].to_vec();
                v.splice(end..end, copy);
            }
            Mutation::Truncate(i) => {
                let p = at(i, v.len() + 1);
                v.truncate(p);
            }
            Mutation::Extend(bytes) => v.extend_from_slice(bytes),
            _ => {}
        }
    }
    v
}

/// `valid` changed by one to four [`Mutation`]s.
pub fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(mutation(), 1..=4).prop_map(move |ms| apply(&valid, &ms))
}

/// One of `valids`, changed by one to four [`Mutation`]s.
pub fn mutated_any(valids: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!valids.is_empty(), "at least one valid input");
    (any::<usize>(), prop::collection::vec(mutation(), 1..=4))
        .prop_map(move |(i, ms)| apply(&valids[i % valids.len()], &ms))
}

/// `valid` text changed by mutations of its bytes (read back lossily, so the
/// result is a string whatever the bytes became).
pub fn mutated_text(valid: String) -> impl Strategy<Value = String> {
    mutated(valid.into_bytes()).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Arbitrary text: any characters, and characters near the input's own alphabet.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..=max).prop_map(|c| c.into_iter().collect()),
        bytes(max).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        prop::collection::vec(
            prop::sample::select(b"0123456789abcdefABCDEF-:.[]/ \t\n".to_vec()),
            0..=max
        )
        .prop_map(|b| String::from_utf8(b).expect("ASCII")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_what_they_say() {
        assert_eq!(apply(b"", &[Mutation::Extend(b"ab".to_vec())]), b"ab");
        assert_eq!(apply(b"abc", &[Mutation::Truncate(0)]).len(), 0);
        let flipped = apply(b"a", &[Mutation::FlipBit(0, 0)]);
        assert_eq!(flipped, b"`");
        // Nothing to flip in an empty input: no panic, nothing changes.
        assert!(apply(b"", &[Mutation::FlipBit(3, 1)]).is_empty());
    }
}
