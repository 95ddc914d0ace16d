//! Identifiers and clocks shared by the cluster's objects.

use std::time::{SystemTime, UNIX_EPOCH};

/// A new random id for agents, managers, tasks and sessions: 25 lowercase base-36
/// characters, as SwarmKit's identity package makes them.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes());
    let mut out = String::with_capacity(25);
    for _ in 0..25 {
        out.push(ALPHABET[(n % 36) as usize] as char);
        n /= 36;
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether `s` looks like a Lightning node id: 33 bytes of compressed public key in
/// lowercase hex.
pub fn is_node_id_hex(s: &str) -> bool {
    s.len() == 66
        && (s.starts_with("02") || s.starts_with("03"))
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
