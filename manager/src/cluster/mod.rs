//! The cluster object: created once by `init`, read by every service. Holds the CA
//! (certificate, and its key sealed with the data key), the join tokens, the sealing
//! key owners seal seeds to, and the settings ([`settings`]).

pub mod settings;

use lnswarm_common::{
    api::{ClusterRecord, ClusterSettings},
    ids::now_unix_ms,
    pki::{ClusterCa, JoinToken, Role},
};
use zeroize::Zeroizing;

use crate::store::{at_rest::UnlockKey, keys, Applied, Attempt, Store, StoreError, TxnBuilder};

/// Associated data of the sealed fields of the cluster object.
const CA_KEY_AAD: &str = "cluster/ca_key";
const SEAL_KEY_AAD: &str = "cluster/seal_secret_key";
const UNLOCK_KEY_AAD: &str = "cluster/unlock_key";
const CHALLENGE_KEY_AAD: &str = "cluster/challenge_key";

fn random_key() -> Zeroizing<[u8; 32]> {
    use rand::RngCore;
    let mut k = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(&mut k[..]);
    k
}

/// Default settings of a new cluster.
pub fn default_settings() -> ClusterSettings {
    settings::defaults()
}

/// Writes the cluster object of a new cluster, its secrets sealed with `store`'s
/// data key, which it thereby adopts. Fails if one exists.
pub async fn create(
    store: &Store,
    ca: &ClusterCa,
    settings: ClusterSettings,
) -> Result<ClusterRecord, ClusterError> {
    let (seal_secret_key, seal_public_key) = lnswarm_common::seal::new_keypair();
    let seal_secret_key = Zeroizing::new(seal_secret_key);
    let ca_key = Zeroizing::new(ca.key_pem());
    let data_key = store.data_key().ok_or(ClusterError::NoDataKey)?;
    let record = ClusterRecord {
        seal_secret_key: store.seal_for_adoption(SEAL_KEY_AAD, seal_secret_key.as_ref())?,
        seal_public_key: seal_public_key.to_vec(),
        cluster_id: ca.cluster_id().to_string(),
        ca_cert_pem: ca.cert_pem().to_string(),
        ca_key_pem: String::new(),
        ca_key_sealed: store.seal_for_adoption(CA_KEY_AAD, ca_key.as_bytes())?,
        data_key_id: data_key.id(),
        worker_token: JoinToken::generate(&ca.digest()).to_string(),
        manager_token: JoinToken::generate(&ca.digest()).to_string(),
        settings: Some(settings),
        created_unix_ms: now_unix_ms(),
        unlock_key_sealed: Vec::new(),
        challenge_key_sealed: store.seal_for_adoption(CHALLENGE_KEY_AAD, &random_key()[..])?,
        root_rotation: None,
        root_rotated_unix_ms: 0,
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

/// The settings in force, clamped into their bounds.
pub fn effective_settings(record: &ClusterRecord) -> ClusterSettings {
    settings::effective(record.settings.as_ref())
}

/// The CA signer (its key opened with the data key).
pub fn ca(store: &Store, record: &ClusterRecord) -> Result<ClusterCa, ClusterError> {
    let key_pem = if record.ca_key_sealed.is_empty() {
        // A store from before data keys, not yet migrated.
        Zeroizing::new(record.ca_key_pem.clone().into_bytes())
    } else {
        Zeroizing::new(store.open_sealed(CA_KEY_AAD, &record.ca_key_sealed)?)
    };
    let key_pem = std::str::from_utf8(&key_pem)
        .map_err(|_| ClusterError::Corrupt("the CA key is not PEM".into()))?;
    ClusterCa::load(&record.cluster_id, &record.ca_cert_pem, key_pem)
        .map_err(|e| ClusterError::Corrupt(e.to_string()))
}

/// Associated data of a rotation's new root key.
pub(crate) const NEW_CA_KEY_AAD: &str = "cluster/root_rotation/new_ca_key";

/// The CA that signs certificates now: during a root rotation the new root, whose
/// leaves carry its certificate cross-signed by the old root; otherwise the root.
pub fn signing_ca(store: &Store, record: &ClusterRecord) -> Result<ClusterCa, ClusterError> {
    let Some(rotation) = &record.root_rotation else {
        return ca(store, record);
    };
    let key_pem = Zeroizing::new(store.open_sealed(NEW_CA_KEY_AAD, &rotation.new_ca_key_sealed)?);
    let key_pem = std::str::from_utf8(&key_pem)
        .map_err(|_| ClusterError::Corrupt("the new CA key is not PEM".into()))?;
    Ok(
        ClusterCa::load(&record.cluster_id, &rotation.new_ca_cert_pem, key_pem)
            .map_err(|e| ClusterError::Corrupt(e.to_string()))?
            .with_chain(&rotation.cross_signed_pem),
    )
}

/// The root that signs certificates now (PEM).
pub fn signing_root(record: &ClusterRecord) -> &str {
    match &record.root_rotation {
        Some(r) => &r.new_ca_cert_pem,
        None => &record.ca_cert_pem,
    }
}

/// Every root trusted now (PEM): both during a rotation, else the root. This is
/// what holders are given to verify their peers with.
pub fn trust_bundle(record: &ClusterRecord) -> String {
    match &record.root_rotation {
        Some(r) => {
            format!(
                "{}\n{}",
                record.ca_cert_pem.trim_end(),
                r.new_ca_cert_pem.trim_end()
            ) + "\n"
        }
        None => record.ca_cert_pem.clone(),
    }
}

/// Seals a root CA key as the cluster's (the key of `ca_cert_pem`).
pub(crate) fn seal_ca_key(store: &Store, key_pem: &str) -> Result<Vec<u8>, ClusterError> {
    Ok(store.seal(CA_KEY_AAD, key_pem.as_bytes())?)
}

/// The secret half of the key owners seal seeds to.
pub fn seal_secret_key(
    store: &Store,
    record: &ClusterRecord,
) -> Result<Zeroizing<Vec<u8>>, ClusterError> {
    Ok(Zeroizing::new(
        store.open_sealed(SEAL_KEY_AAD, &record.seal_secret_key)?,
    ))
}

/// The autolock unlock key, if autolock is on.
pub fn unlock_key(
    store: &Store,
    record: &ClusterRecord,
) -> Result<Option<UnlockKey>, ClusterError> {
    if record.unlock_key_sealed.is_empty() {
        return Ok(None);
    }
    let bytes = Zeroizing::new(store.open_sealed(UNLOCK_KEY_AAD, &record.unlock_key_sealed)?);
    UnlockKey::from_bytes(&bytes)
        .map(Some)
        .ok_or_else(|| ClusterError::Corrupt("the unlock key is not 32 bytes".into()))
}

/// Sets (or, with `None`, clears) the sealed unlock key of `record`.
pub fn set_unlock_key(
    store: &Store,
    record: &mut ClusterRecord,
    key: Option<&UnlockKey>,
) -> Result<(), ClusterError> {
    record.unlock_key_sealed = match key {
        Some(k) => store.seal(UNLOCK_KEY_AAD, k.bytes())?,
        None => Vec::new(),
    };
    Ok(())
}

/// Seals the fields a store from before data keys holds in the clear, with the
/// data key `store` holds, and records that key as the cluster's. For the leader's
/// one-time migration ([`crate::secrets_at_rest`]).
pub fn seal_legacy_fields(store: &Store, record: &mut ClusterRecord) -> Result<(), ClusterError> {
    let key = store.data_key().ok_or(ClusterError::NoDataKey)?;
    if record.ca_key_sealed.is_empty() && !record.ca_key_pem.is_empty() {
        record.ca_key_sealed = store.seal_for_adoption(CA_KEY_AAD, record.ca_key_pem.as_bytes())?;
        record.ca_key_pem.clear();
    }
    if !crate::store::at_rest::is_sealed(&record.seal_secret_key) {
        let plain = Zeroizing::new(std::mem::take(&mut record.seal_secret_key));
        record.seal_secret_key = store.seal_for_adoption(SEAL_KEY_AAD, &plain)?;
    }
    if record.challenge_key_sealed.is_empty() {
        record.challenge_key_sealed =
            store.seal_for_adoption(CHALLENGE_KEY_AAD, &random_key()[..])?;
    }
    record.data_key_id = key.id();
    Ok(())
}

/// The key GetChallenge MACs its challenges with.
pub fn challenge_key(
    store: &Store,
    record: &ClusterRecord,
) -> Result<Zeroizing<Vec<u8>>, ClusterError> {
    if record.challenge_key_sealed.is_empty() {
        return Err(ClusterError::Corrupt(
            "the cluster has no challenge key yet".into(),
        ));
    }
    Ok(Zeroizing::new(store.open_sealed(
        CHALLENGE_KEY_AAD,
        &record.challenge_key_sealed,
    )?))
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

/// Changes the cluster object with `change` under a version check (retried a few
/// times if someone else changed it meanwhile); returns what `change` returned.
pub async fn update<T>(
    store: &Store,
    mut change: impl FnMut(&mut ClusterRecord) -> Result<T, ClusterError>,
) -> Result<T, ClusterError> {
    let (value, _) = store
        .update("the cluster object", |store| {
            let (version, mut record) = load(store)?;
            let value = change(&mut record)?;
            let txn = put(
                TxnBuilder::new().require_version(keys::CLUSTER, version),
                &record,
            )
            .build();
            Ok::<_, ClusterError>(Attempt::Propose(txn, value))
        })
        .await?;
    Ok(value)
}

/// Replaces the worker or manager token; the old one is refused from then on.
pub async fn rotate_token(store: &Store, role: Role) -> Result<String, ClusterError> {
    update(store, |record| {
        let token = JoinToken::generate(&lnswarm_common::pki::ca_digest(
            &lnswarm_common::tls::certs_from_pem(&record.ca_cert_pem)
                .map_err(|e| ClusterError::Corrupt(e.to_string()))?[0],
        ))
        .to_string();
        match role {
            Role::Manager => record.manager_token = token.clone(),
            _ => record.worker_token = token.clone(),
        }
        Ok(token)
    })
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("this data directory already holds a cluster")]
    AlreadyInitialized,
    #[error("the cluster is not initialized")]
    NotInitialized,
    #[error("cluster object is corrupt: {0}")]
    Corrupt(String),
    #[error("this manager has no data key")]
    NoDataKey,
    #[error("autolock is off; turn it on with `lnswarmctl cluster update --autolock true`")]
    AutolockOff,
    #[error(transparent)]
    InvalidSetting(#[from] settings::InvalidSetting),
    #[error(transparent)]
    Store(#[from] StoreError),
}
