//! Where each kind of object lives in the store, and the watch tags its changes wake.

pub const CLUSTER: &str = "cluster";

/// Watch tag of the cluster object: its settings are read where they apply (the
/// dispatcher's heartbeat timing) when it changes.
pub const CLUSTER_TAG: &str = "cluster";

pub fn certificate(id: &str) -> String {
    format!("certs/{id}")
}

pub const CERTIFICATES: &str = "certs/";

pub fn manager(id: &str) -> String {
    format!("managers/{id}")
}

pub const MANAGERS: &str = "managers/";

pub fn agent(id: &str) -> String {
    format!("agents/{id}")
}

pub const AGENTS: &str = "agents/";

pub fn task(id: &str) -> String {
    format!("tasks/{id}")
}

pub const TASKS: &str = "tasks/";

pub fn secret(id: &str) -> String {
    format!("secrets/{id}")
}

pub fn hosted_node(node_id: &str) -> String {
    format!("nodes/{node_id}")
}

pub const HOSTED_NODES: &str = "nodes/";

/// A challenge Register or Recover used, by the hex of its MAC.
pub fn used_challenge(mac_hex: &str) -> String {
    format!("challenges/{mac_hex}")
}

pub const USED_CHALLENGES: &str = "challenges/";

/// Watch tag for everything assigned to one agent.
pub fn agent_tag(agent_id: &str) -> String {
    format!("agent/{agent_id}")
}
