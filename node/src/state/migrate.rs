//! The upgrade path: a node created before replicated state kept it in ldk-node's
//! SQLite under its storage dir. The first time it starts under a lease with an
//! empty replicated state, every row of that file (but the rebuildable keys) is
//! copied into the replicated store, and the file is renamed so that it is never
//! read again.

use std::path::{Path, PathBuf};

use super::rebuildable::is_rebuildable;

/// ldk-node's default file and table (`io::sqlite_store`).
const FILE: &str = "ldk_node_data.sqlite";
const TABLE: &str = "ldk_node_data";
const RETIRED: &str = "ldk_node_data.sqlite.copied-to-managers";

pub struct OldStore {
    path: PathBuf,
    pub rows: Vec<((String, String, String), Vec<u8>)>,
}

impl OldStore {
    /// Renames the file once its rows are safely in the replicated store.
    pub fn retire(self) -> std::io::Result<()> {
        std::fs::rename(&self.path, self.path.with_file_name(RETIRED))
    }
}

/// The old store's rows, if the storage dir has one.
pub fn read_old_store(storage_dir: &Path) -> Result<Option<OldStore>, rusqlite::Error> {
    let path = storage_dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = db.prepare(&format!(
        "SELECT primary_namespace, secondary_namespace, key, value FROM {TABLE}"
    ))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ),
                r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
            ))
        })?
        .filter(|r| {
            r.as_ref()
                .map_or(true, |((p, s, k), _)| !is_rebuildable(p, s, k))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(OldStore { path, rows }))
}
