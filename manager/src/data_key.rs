//! Keeps this manager's data key (see [`crate::store::at_rest`]) in step with the
//! cluster, on every manager:
//!
//! - a store from before data keys is migrated by its leader: the leader's key
//!   becomes the cluster's (recorded in the cluster object by its id) and every
//!   value that was in the clear is sealed with it;
//! - a manager whose key is not the one the cluster names (it started on an old
//!   store, or joined before the migration) fetches the cluster's from a peer;
//! - the key file follows autolock: wrapped by the unlock key while autolock is on
//!   (and rewrapped when the key rotates), in the clear when it is off.

use std::{path::PathBuf, time::Duration};

use lnswarm_common::{
    api::{raft_client::RaftClient, ClusterRecord, GetDataKeyRequest, Manager, Secret},
    pki::Role,
    tls::{self, ClientTls, ServerIdentity},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    cluster,
    store::{
        at_rest::{read_key, write_key, AtRestError, DataKey},
        keys, secrets, Attempt, Store, StoreError, TxnBuilder,
    },
};

#[derive(Debug, thiserror::Error)]
enum KeeperError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    AtRest(#[from] AtRestError),
    #[error("no peer holds data key {0} yet")]
    NoPeerHasKey(String),
}

/// Secrets sealed per transaction in a migration.
const MIGRATION_BATCH: usize = 256;

/// Runs until `stop` turns true.
pub async fn keep(store: Store, path: PathBuf, tls: ClientTls, stop: CancellationToken) {
    let mut changes = store.state().watch().subscribe(keys::CLUSTER_TAG);
    let mut leadership = store.leadership();
    let mut secrets_sealed = false;
    loop {
        match step(&store, &path, &tls, &mut secrets_sealed).await {
            Ok(()) => {}
            Err(e) => warn!(error = %e, "keeping the data key"),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = leadership.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn step(
    store: &Store,
    path: &std::path::Path,
    tls: &ClientTls,
    secrets_sealed: &mut bool,
) -> Result<(), KeeperError> {
    // A joiner that has not caught up has no cluster object yet.
    let Some((_, record)) = store.get::<ClusterRecord>(keys::CLUSTER)? else {
        return Ok(());
    };
    if record.data_key_id.is_empty() {
        if store.is_leader() {
            adopt(store).await?;
        }
        return Ok(());
    }
    if store.data_key().map(|k| k.id()).as_deref() != Some(record.data_key_id.as_str()) {
        let key = fetch(store, tls, &record.data_key_id).await?;
        info!(key_id = %key.id(), "fetched the cluster's data key from a peer");
        // Written in the clear for a moment; `follow_autolock` wraps it next.
        write_key(path, &key, None)?;
        store.set_data_key(key);
    }
    follow_autolock(store, path, &record)?;
    if store.is_leader() && !*secrets_sealed {
        seal_secrets(store).await?;
        *secrets_sealed = true;
    }
    Ok(())
}

/// Makes this manager's key the cluster's and seals the cluster object's secrets.
async fn adopt(store: &Store) -> Result<(), KeeperError> {
    let key = store.data_key().ok_or(cluster::ClusterError::NoDataKey)?;
    let adopted = cluster::update(store, |record| {
        if !record.data_key_id.is_empty() {
            return Ok(false);
        }
        cluster::seal_legacy_fields(store, record)?;
        Ok(true)
    })
    .await?;
    if adopted {
        info!(key_id = %key.id(), "this manager's data key is now the cluster's; sealing what was stored in the clear");
    }
    Ok(())
}

/// Seals every secret stored in the clear (by a version before data keys).
async fn seal_secrets(store: &Store) -> Result<(), KeeperError> {
    let plain: Vec<String> = store
        .list::<Secret>(keys::SECRETS)?
        .into_iter()
        .filter(|(_, s)| !crate::store::at_rest::is_sealed(&s.data))
        .map(|(_, s)| s.id)
        .collect();
    for batch in plain.chunks(MIGRATION_BATCH) {
        store
            .update("secrets being sealed", |store| {
                let mut txn = TxnBuilder::new();
                for id in batch {
                    let key = keys::secret(id);
                    let Some((version, _)) = store.get::<Secret>(&key)? else {
                        continue;
                    };
                    let Some(secret) = secrets::get(store, id)? else {
                        continue;
                    };
                    txn = secrets::put(
                        store,
                        txn.require_version(&key, version),
                        &secret,
                        Vec::<String>::new(),
                    )?;
                }
                Ok::<_, KeeperError>(Attempt::Propose(txn.build(), ()))
            })
            .await?;
    }
    if !plain.is_empty() {
        info!(secrets = plain.len(), "sealed secrets stored in the clear");
    }
    Ok(())
}

/// Asks the other managers for the key with id `key_id`.
async fn fetch(store: &Store, tls: &ClientTls, key_id: &str) -> Result<DataKey, KeeperError> {
    let me = store.raft().map(|r| r.manager_id().to_string());
    for (_, m) in store.list::<Manager>(keys::MANAGERS)? {
        if Some(&m.id) == me.as_ref() {
            continue;
        }
        let expected = ServerIdentity::exact(Role::Manager, &m.id);
        let Ok(channel) = tls::connect(&m.addr, tls, expected).await else {
            continue;
        };
        let answer = RaftClient::new(channel)
            .get_data_key(GetDataKeyRequest {
                key_id: key_id.to_string(),
            })
            .await;
        if let Ok(answer) = answer {
            if let Some(key) = DataKey::from_bytes(&answer.into_inner().data_key) {
                if key.id() == key_id {
                    return Ok(key);
                }
            }
        }
    }
    Err(KeeperError::NoPeerHasKey(key_id.to_string()))
}

/// Rewrites the key file when autolock was turned on or off, or its key rotated.
fn follow_autolock(
    store: &Store,
    path: &std::path::Path,
    record: &ClusterRecord,
) -> Result<(), KeeperError> {
    let Some(key) = store.data_key() else {
        return Ok(());
    };
    let unlock = if cluster::effective_settings(record).autolock {
        cluster::unlock_key(store, record)?
    } else {
        None
    };
    let current = read_key(path)?;
    let in_step = match (&current, &unlock) {
        (Some(stored), None) => !stored.is_locked(),
        (Some(stored), Some(u)) => stored.is_locked() && stored.unlock(Some(u)).is_ok(),
        (None, _) => false,
    };
    if !in_step {
        write_key(path, &key, unlock.as_ref())?;
        info!(autolock = unlock.is_some(), "data key file rewritten");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use lnswarm_common::pki::ClusterCa;

    use super::*;
    use crate::store::at_rest::is_sealed;

    /// A store as the version before data keys wrote it: the CA key and the sealing
    /// key in the cluster object, and a seed, all in the clear.
    #[tokio::test]
    async fn the_leader_migrates_a_store_from_before_data_keys() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(&dir.path().join("state"));
        let store = Store::open_local(db, None, Some(DataKey::generate())).unwrap();
        let ca = ClusterCa::create("old-cluster").unwrap();
        let (seal_secret, seal_public) = lnswarm_common::seal::new_keypair();
        let old = ClusterRecord {
            cluster_id: "old-cluster".into(),
            ca_cert_pem: ca.cert_pem().into(),
            ca_key_pem: ca.key_pem(),
            seal_secret_key: seal_secret.to_vec(),
            seal_public_key: seal_public.to_vec(),
            ..Default::default()
        };
        let seed = Secret {
            id: "seed-x".into(),
            version: None,
            data: vec![7; 64],
        };
        store
            .propose(
                TxnBuilder::new()
                    .put(keys::CLUSTER, &old)
                    .put(keys::secret("seed-x"), &seed)
                    .build(),
            )
            .await
            .unwrap();
        // Before the migration, readers still get the values as they are.
        assert_eq!(
            secrets::get(&store, "seed-x").unwrap().unwrap().data,
            seed.data
        );

        let tls = lnswarm_common::tls::client_config(ca.cert_pem(), None).unwrap();
        let path = dir.path().join("keys/data-key.json");
        let mut sealed = false;
        // Adoption, then (on the next pass) the secrets.
        step(&store, &path, &tls, &mut sealed).await.unwrap();
        step(&store, &path, &tls, &mut sealed).await.unwrap();

        let (_, record) = cluster::load(&store).unwrap();
        assert_eq!(record.data_key_id, store.data_key().unwrap().id());
        assert!(
            record.ca_key_pem.is_empty(),
            "the CA key left the clear field"
        );
        assert!(is_sealed(&record.ca_key_sealed) && is_sealed(&record.seal_secret_key));
        assert_eq!(
            cluster::ca(&store, &record).unwrap().key_pem(),
            ca.key_pem(),
            "the CA key opens"
        );
        assert_eq!(
            cluster::seal_secret_key(&store, &record)
                .unwrap()
                .as_slice(),
            seal_secret.as_slice()
        );
        let (_, raw) = store
            .get::<Secret>(&keys::secret("seed-x"))
            .unwrap()
            .unwrap();
        assert!(is_sealed(&raw.data), "the seed is sealed");
        assert_eq!(
            secrets::get(&store, "seed-x").unwrap().unwrap().data,
            seed.data
        );
        assert!(
            read_key(&path).unwrap().is_some(),
            "the key file is written"
        );
    }
}
