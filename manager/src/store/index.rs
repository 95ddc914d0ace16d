//! An index of tasks by agent, kept in memory beside the state machine (as
//! SwarmKit's store indexes tasks by node): an agent's COMPLETE assignment set reads
//! its own tasks instead of scanning every task in the cluster. Built from a scan
//! when the state machine opens or a snapshot replaces it, then kept up to date by
//! every applied batch.

use std::collections::{BTreeSet, HashMap};

use lnswarm_common::api::Task;
use prost::Message;

use super::keys;

#[derive(Default)]
pub struct TaskIndex {
    by_agent: HashMap<String, BTreeSet<String>>,
    agent_of: HashMap<String, String>,
}

impl TaskIndex {
    /// Records that the task at `key` now holds `value` (`None`: deleted).
    pub fn update(&mut self, key: &str, value: Option<&[u8]>) {
        if keys::task_id_of(key).is_none() {
            return;
        }
        if let Some(old) = self.agent_of.remove(key) {
            if let Some(set) = self.by_agent.get_mut(&old) {
                set.remove(key);
                if set.is_empty() {
                    self.by_agent.remove(&old);
                }
            }
        }
        let Some(agent) = value
            .and_then(|v| Task::decode(v).ok())
            .map(|t| t.agent_id)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        self.by_agent
            .entry(agent.clone())
            .or_default()
            .insert(key.to_string());
        self.agent_of.insert(key.to_string(), agent);
    }

    /// The task keys placed on `agent`.
    pub fn of_agent(&self, agent: &str) -> Vec<String> {
        self.by_agent
            .get(agent)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn clear(&mut self) {
        self.by_agent.clear();
        self.agent_of.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(agent: &str) -> Vec<u8> {
        Task {
            agent_id: agent.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn follows_puts_moves_and_deletes() {
        let mut i = TaskIndex::default();
        i.update(&keys::task("t1"), Some(&task("a")));
        i.update(&keys::task("t2"), Some(&task("a")));
        i.update(&keys::agent("a"), Some(b"x"));
        assert_eq!(i.of_agent("a"), vec![keys::task("t1"), keys::task("t2")]);
        i.update(&keys::task("t1"), Some(&task("b")));
        assert_eq!(i.of_agent("a"), vec![keys::task("t2")]);
        assert_eq!(i.of_agent("b"), vec![keys::task("t1")]);
        i.update(&keys::task("t2"), None);
        assert!(i.of_agent("a").is_empty());
    }
}
