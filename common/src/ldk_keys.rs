//! LDK's rules for key-value store keys (`lightning::util::persist`): each of the
//! primary namespace, secondary namespace and key is at most 120 characters of
//! `[A-Za-z0-9_-]`, the key is not empty, and a secondary namespace needs a primary
//! one. Checked where a hosted node's state is written (`lnswarm-node`) and where it
//! is stored (the managers), so that both refuse the same keys.

/// Longest namespace or key.
pub const MAX_LEN: usize = 120;

fn valid_part(s: &str) -> bool {
    s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a key breaks the rules, if it does.
pub fn check(primary: &str, secondary: &str, key: &str) -> Result<(), String> {
    for (what, part) in [
        ("primary namespace", primary),
        ("secondary namespace", secondary),
        ("key", key),
    ] {
        if !valid_part(part) {
            return Err(format!(
                "the {what} must be at most {MAX_LEN} characters of [A-Za-z0-9_-]"
            ));
        }
    }
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if primary.is_empty() && !secondary.is_empty() {
        return Err("a secondary namespace needs a primary one".into());
    }
    Ok(())
}
