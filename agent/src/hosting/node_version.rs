//! Which `lnswarm-node` version this agent ships: what its binary prints for
//! `--version`. The managers compare it with the version each hosted node runs
//! (MaybeUpgrade, rolling upgrades), so it is read again whenever the file changes
//! (a package upgrade replaces it while the agent runs).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

/// What identifies one file's contents well enough to know it was replaced.
#[derive(Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// The node binary and the version last read from it.
pub struct NodeBinary {
    path: PathBuf,
    last: Mutex<Option<(Stamp, String)>>,
}

impl NodeBinary {
    pub fn new(path: PathBuf) -> Self {
        NodeBinary {
            path,
            last: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its version now ("" when it cannot be read: then no node is upgraded to it).
    /// Runs the binary only when the file changed since the last look.
    pub fn version(&self) -> String {
        let now = stamp(&self.path);
        let mut last = self.last.lock().expect("node version lock");
        if let (Some(now), Some((seen, version))) = (&now, last.as_ref()) {
            if now == seen {
                return version.clone();
            }
        }
        let version = probe(&self.path).unwrap_or_default();
        *last = now.map(|s| (s, version.clone()));
        version
    }
}

/// `lnswarm-node --version` prints "lnswarm-node 0.1.0": the last word.
fn probe(path: &Path) -> Option<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        tracing::warn!(binary = %path.display(), "lnswarm-node --version failed");
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let word = text.split_whitespace().last()?;
    (word.len() <= 64).then(|| word.to_string())
}
