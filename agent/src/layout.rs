//! An agent's data directory:
//!
//! ```text
//! D/agent.json     this agent's id, cluster, managers it knows, advertised address
//! D/credentials/   its certificate, key and the root CA (mode 0600)
//! D/state/         sled: assigned tasks, their last statuses, running children's pids
//! D/tasks/         each task's output (<task id>.log)
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
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
        let path = self.config_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (has this agent joined?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn write_config(&self, config: &AgentConfig) -> anyhow::Result<()> {
        let path = self.config_file();
        let tmp = self.0.join(".agent.json.tmp");
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("creating {}", self.0.display()))?;
        std::fs::write(&tmp, serde_json::to_vec_pretty(config)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}
