//! A manager's data directory:
//!
//! ```text
//! D/manager.json   this manager's id, listen address and cluster id
//! D/state/         sled: the state machine (and, with a quorum, the raft log)
//! D/credentials/   this manager's certificate, key and the root CA (mode 0600)
//! D/operator/      an operator credential for lnswarmctl (written by `init`)
//! D/keys/          the cluster's data key (mode 0600; wrapped when autolocked)
//! ```

use std::path::{Path, PathBuf};

use lnswarm_common::json_file;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagerConfig {
    pub id: String,
    pub cluster_id: String,
    /// Address to listen on.
    pub listen: String,
    /// Address other managers and agents dial (defaults to `listen`).
    pub advertise: String,
}

pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataDir(path.into())
    }
    pub fn root(&self) -> &Path {
        &self.0
    }
    pub fn config_file(&self) -> PathBuf {
        self.0.join("manager.json")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    pub fn credentials(&self) -> PathBuf {
        self.0.join("credentials")
    }
    pub fn operator(&self) -> PathBuf {
        self.0.join("operator")
    }

    /// Creates the directory for a new manager, refusing one that already holds one.
    pub fn create_empty(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        anyhow::ensure!(
            !self.config_file().exists() && !self.state().exists(),
            "{} already holds a manager; start it with `lnswarm-manager run --data-dir {}`",
            self.root().display(),
            self.root().display()
        );
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.root())
            .with_context(|| format!("creating {}", self.root().display()))
    }

    /// Makes everything under the data directory private to its owner (a directory
    /// from an older version, or one made under a loose umask).
    pub fn restrict_permissions(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        lnswarm_common::private_files::restrict_tree(self.root())
            .with_context(|| format!("making {} private", self.root().display()))
    }

    pub fn read_config(&self) -> anyhow::Result<ManagerConfig> {
        json_file::read(&self.config_file(), "is this a manager data directory?")
    }

    pub fn write_config(&self, config: &ManagerConfig) -> anyhow::Result<()> {
        json_file::write_atomic(&self.config_file(), config)
    }
}

/// Opens the sled database under `D/state`.
pub fn open_db(dir: &DataDir) -> anyhow::Result<sled::Db> {
    use anyhow::Context;
    sled::Config::new()
        .path(dir.state())
        .mode(sled::Mode::HighThroughput)
        .open()
        .with_context(|| format!("opening the store at {}", dir.state().display()))
}
