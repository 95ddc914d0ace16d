//! The cluster object: created once by `init`, read by every service. Holds the CA
//! (certificate and key), the join tokens and the settings.

use lnswarm_common::{
    api::{ClusterRecord, ClusterSettings},
    ids::now_unix_ms,
    pki::{ClusterCa, JoinToken, Role},
};
use tonic::Status;

use crate::store::{keys, Applied, Store, StoreError, TxnBuilder};

/// Default settings of a new cluster.
pub fn default_settings() -> ClusterSettings {
    ClusterSettings {
        heartbeat_period_ms: 5_000,
        heartbeat_grace_multiplier: 3,
        network: "regtest".into(),
        chain_source: None,
        require_invite_code: false,
    }
}

/// Writes the cluster object of a new cluster. Fails if one exists.
pub async fn create(store: &Store, ca: &ClusterCa) -> Result<ClusterRecord, ClusterError> {
    let (seal_secret_key, seal_public_key) = lnswarm_common::seal::new_keypair();
    let record = ClusterRecord {
        seal_secret_key: seal_secret_key.to_vec(),
        seal_public_key: seal_public_key.to_vec(),
        cluster_id: ca.cluster_id().to_string(),
        ca_cert_pem: ca.cert_pem().to_string(),
        ca_key_pem: ca.key_pem(),
        worker_token: JoinToken::generate(&ca.digest()).to_string(),
        manager_token: JoinToken::generate(&ca.digest()).to_string(),
        settings: Some(default_settings()),
        created_unix_ms: now_unix_ms(),
    };
    let txn = put(TxnBuilder::new().require_absent(keys::CLUSTER), &record).build();
    match store.propose(txn).await? {
        Applied::Committed(_) => Ok(record),
        Applied::CheckFailed(_) => Err(ClusterError::AlreadyInitialized),
    }
}

/// The cluster object and its version.
pub fn load(store: &Store) -> Result<(u64, ClusterRecord), ClusterError> {
    store
        .get::<ClusterRecord>(keys::CLUSTER)?
        .ok_or(ClusterError::NotInitialized)
}

/// The CA signer.
pub fn ca(record: &ClusterRecord) -> Result<ClusterCa, ClusterError> {
    ClusterCa::load(&record.cluster_id, &record.ca_cert_pem, &record.ca_key_pem)
        .map_err(|e| ClusterError::Corrupt(e.to_string()))
}

/// The role a presented join token grants, compared in constant time against both
/// current tokens.
pub fn role_for_token(record: &ClusterRecord, presented: &JoinToken) -> Option<Role> {
    let check = |stored: &str, role| {
        JoinToken::parse(stored)
            .ok()
            .filter(|t| t.matches(presented))
            .map(|_| role)
    };
    // Evaluate both so timing does not reveal which one matched.
    let worker = check(&record.worker_token, Role::Worker);
    let manager = check(&record.manager_token, Role::Manager);
    worker.or(manager)
}

/// Adds the write of the cluster object to `txn`, with the watch tag that wakes
/// whoever follows its settings (the dispatcher).
pub fn put(txn: TxnBuilder, record: &ClusterRecord) -> TxnBuilder {
    txn.put_tagged(keys::CLUSTER, record, [keys::CLUSTER_TAG])
}

/// Replaces the worker or manager token; the old one is refused from then on.
pub async fn rotate_token(store: &Store, role: Role) -> Result<String, ClusterError> {
    loop {
        let (version, mut record) = load(store)?;
        let digest = ca(&record)?.digest();
        let token = JoinToken::generate(&digest).to_string();
        match role {
            Role::Manager => record.manager_token = token.clone(),
            _ => record.worker_token = token.clone(),
        }
        let txn = put(
            TxnBuilder::new().require_version(keys::CLUSTER, version),
            &record,
        )
        .build();
        if let Applied::Committed(_) = store.propose(txn).await? {
            return Ok(token);
        }
        // Someone else changed the cluster object meanwhile: read again and retry.
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("this data directory already holds a cluster")]
    AlreadyInitialized,
    #[error("the cluster is not initialized")]
    NotInitialized,
    #[error("cluster object is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ClusterError> for Status {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Store(e) => e.into(),
            ClusterError::NotInitialized => Status::failed_precondition(e.to_string()),
            other => Status::internal(other.to_string()),
        }
    }
}
