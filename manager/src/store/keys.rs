//! The store's vocabulary: where each kind of object lives and the watch tags its
//! changes wake, one section per object kind (as SwarmKit's `manager/state/store`
//! keeps one table per kind). Nothing outside this module spells a key.

// ---- the cluster object (one) ----

pub const CLUSTER: &str = "cluster";

/// Watch tag of the cluster object: its settings are read where they apply (the
/// dispatcher's heartbeat timing) when it changes.
pub const CLUSTER_TAG: &str = "cluster";

// ---- certificates the CA issued (revocation, status) ----

pub const CERTIFICATES: &str = "certs/";

pub fn certificate(id: &str) -> String {
    format!("{CERTIFICATES}{id}")
}

// ---- managers ----

pub const MANAGERS: &str = "managers/";

pub fn manager(id: &str) -> String {
    format!("{MANAGERS}{id}")
}

// ---- agents ----

pub const AGENTS: &str = "agents/";

pub fn agent(id: &str) -> String {
    format!("{AGENTS}{id}")
}

/// Watch tag for everything assigned to one agent (its record, tasks, secrets).
pub fn agent_tag(agent_id: &str) -> String {
    format!("agent/{agent_id}")
}

// ---- tasks ----

pub const TASKS: &str = "tasks/";

pub fn task(id: &str) -> String {
    format!("{TASKS}{id}")
}

/// The task id of a task key.
pub fn task_id_of(key: &str) -> Option<&str> {
    key.strip_prefix(TASKS)
}

// ---- secrets (sealed at rest; see `secrets`) ----

pub const SECRETS: &str = "secrets/";

pub fn secret(id: &str) -> String {
    format!("{SECRETS}{id}")
}

/// The secret id of a secret key.
pub fn secret_id_of(key: &str) -> Option<&str> {
    key.strip_prefix(SECRETS)
}

/// A hosted node's seed, written at registration.
pub fn seed_secret_id(node_id: &str) -> String {
    format!("seed-{node_id}")
}

/// A hosted node's TLS certificate and key, written for each of its tasks.
pub fn tls_secret_id(node_id: &str) -> String {
    format!("tls-{node_id}")
}

// ---- hosted nodes ----

pub const HOSTED_NODES: &str = "nodes/";

pub fn hosted_node(node_id: &str) -> String {
    format!("{HOSTED_NODES}{node_id}")
}

/// An operator's rolling upgrade of hosted nodes, while it runs (one at a time).
pub const ROLLING_UPGRADE: &str = "rolling-upgrade";

/// Watch tag of one hosted node's record (Schedule waits on it).
pub fn node_tag(node_id: &str) -> String {
    format!("node/{node_id}")
}

// ---- challenges that Register or Recover used ----

pub const USED_CHALLENGES: &str = "challenges/";

/// A used challenge, by the hex of its MAC.
pub fn used_challenge(mac_hex: &str) -> String {
    format!("{USED_CHALLENGES}{mac_hex}")
}

// ---- invite codes ----

pub const INVITES: &str = "invites/";

pub fn invite(code: &str) -> String {
    format!("{INVITES}{code}")
}

// ---- hosted nodes' leases and their own state (ldk-node's key-value store) ----

pub const NODE_LEASES: &str = "node-leases/";

/// The lease a hosted node runs under: its epoch fences every state write.
pub fn node_lease(node_id: &str) -> String {
    format!("{NODE_LEASES}{node_id}")
}

pub const NODE_STATE: &str = "node-state/";

/// The last write a node committed (orders its writes; see node_state.proto).
/// Under [`NODE_STATE`] so that it wakes nobody, but outside every node's prefix.
pub fn node_state_head(node_id: &str) -> String {
    format!("{NODE_STATE}heads/{node_id}")
}

/// Everything one node keeps (the prefix of its keys).
pub fn node_state_prefix(node_id: &str) -> String {
    format!("{NODE_STATE}{node_id}/")
}

/// One key of a node's state. LDK's namespaces and keys never hold `/` (their
/// alphabet is `[A-Za-z0-9_-]`), so the three parts split back unambiguously.
pub fn node_state(node_id: &str, primary: &str, secondary: &str, key: &str) -> String {
    format!("{NODE_STATE}{node_id}/{primary}/{secondary}/{key}")
}

/// The (primary, secondary, key) of a node-state key under `prefix`.
pub fn node_state_parts<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
    let mut parts = key.strip_prefix(prefix)?.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

// ---- exported nodes (ExportNode): the record and the encrypted chunks ----

pub const NODE_EXPORTS: &str = "node-exports/";

/// A finished export's record (size, digest, where its chunks are).
pub fn node_export(node_id: &str) -> String {
    format!("{NODE_EXPORTS}{node_id}/record")
}

/// Every chunk of every export attempt of one node.
pub fn node_export_chunks(node_id: &str) -> String {
    format!("{NODE_EXPORTS}{node_id}/chunks/")
}

/// Every chunk of the encrypted export made by `attempt`.
pub fn node_export_attempt_chunks(node_id: &str, attempt: &str) -> String {
    format!("{}{attempt}/", node_export_chunks(node_id))
}

/// One chunk of the encrypted export made by `attempt`.
pub fn node_export_chunk(node_id: &str, attempt: &str, index: u32) -> String {
    format!("{}{index:08}", node_export_attempt_chunks(node_id, attempt))
}

// ---- outgoing webhooks and their pending deliveries ----

pub const WEBHOOKS: &str = "webhooks/";

/// Every webhook of one node.
pub fn webhooks_of(node_id: &str) -> String {
    format!("{WEBHOOKS}{node_id}/")
}

/// One webhook (ids zero-padded so that they list in order).
pub fn webhook(node_id: &str, id: i64) -> String {
    format!("{WEBHOOKS}{node_id}/{id:019}")
}

pub const WEBHOOK_DELIVERIES: &str = "webhook-deliveries/";

/// Every pending delivery to one webhook.
pub fn webhook_deliveries_of(node_id: &str, webhook_id: i64) -> String {
    format!("{WEBHOOK_DELIVERIES}{node_id}/{webhook_id:019}/")
}

/// One event's pending delivery to one webhook.
pub fn webhook_delivery(node_id: &str, webhook_id: i64, event_id: &str) -> String {
    format!("{}{event_id}", webhook_deliveries_of(node_id, webhook_id))
}

// ---- device pairing requests ----

pub const PAIRINGS: &str = "pairings/";

/// Every pairing request of one node.
pub fn pairings_of(node_id: &str) -> String {
    format!("{PAIRINGS}{node_id}/")
}

/// One pairing request.
pub fn pairing(node_id: &str, request_id: u64) -> String {
    format!("{PAIRINGS}{node_id}/{request_id:020}")
}
