//! Small JSON files (a manager's or agent's config, an owner's profile): read with a
//! hint for when the file is missing, and replaced atomically so a crash never leaves
//! half a file.

use std::path::Path;

use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};

/// Reads `path`; `missing_hint` says what its absence usually means.
pub fn read<T: DeserializeOwned>(path: &Path, missing_hint: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} ({missing_hint})", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes `value` to `path` through a synced temporary file in the same directory,
/// renamed into place and the directory synced (`cert_files::write_private`).
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let dir = path.parent().context("a JSON file path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::cert_files::write_private(path, &serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}
