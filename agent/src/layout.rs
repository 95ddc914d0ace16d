//! An agent's data directory:
//!
//! ```text
//! D/agent.json     this agent's id, cluster, managers it knows, advertised address
//! D/credentials/   its certificate, key and the root CA (mode 0600)
//! D/state/         sled: assigned tasks, their last statuses, running children's pids
//! D/tasks/         each task's output (<task id>.log)
//! ```

use std::path::{Path, PathBuf};

use lnswarm_common::json_file;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentConfig {
    pub id: String,
    pub cluster_id: String,
    pub managers: Vec<String>,
    pub advertise_addr: String,
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
        self.0.join("agent.json")
    }
    pub fn credentials(&self) -> PathBuf {
        self.0.join("credentials")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    pub fn task_logs(&self) -> PathBuf {
        self.0.join("tasks")
    }

    pub fn read_config(&self) -> anyhow::Result<AgentConfig> {
        json_file::read(&self.config_file(), "has this agent joined?")
    }

    pub fn write_config(&self, config: &AgentConfig) -> anyhow::Result<()> {
        json_file::write_atomic(&self.config_file(), config)
    }
}
