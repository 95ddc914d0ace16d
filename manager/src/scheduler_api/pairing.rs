//! Pairing a new device with a node, as Greenlight's pairing does: the new device,
//! which has no credential, asks (PairDevice) with its CSR and a name; the owner's
//! paired device sees the request on SignerRequestsStream and approves or refuses
//! it; on approval the cluster signs the CSR (an owner certificate, or a read-only
//! `lightning-viewer` one) and the new device fetches it with the session secret it
//! was given (GetPairing). Requests expire after the cluster's pairing TTL
//! (`cluster update --pairing-ttl`, 5 min by default); records are swept
//! [`KEEP_AFTER_MS`] after that.

use lnswarm_common::{
    api::{HostedNode, PairingRecord, PairingRequest, PairingState},
    ids::now_unix_ms,
    pki::Role,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::registration::{self, owner_cn, RegistrationError};
use crate::{
    ca::{check_csr, sign_leaf, IssueError},
    cluster::{self, ClusterError},
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

/// How long a decided or expired request is kept for the device to fetch.
pub const KEEP_AFTER_MS: i64 = 10 * 60 * 1000;
/// Most pending requests one node may have (anyone may ask).
pub const MAX_PENDING: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error("this node already has {MAX_PENDING} pending pairing requests; try again later")]
    TooMany,
    /// Also for a wrong session secret: a guess learns nothing.
    #[error("no such pairing request")]
    NotFound,
    #[error("the pairing request was already {0}")]
    Decided(&'static str),
    #[error("the pairing request has expired; the new device must ask again")]
    Expired,
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new request and the session secret its device fetches the outcome with.
pub struct Requested {
    pub record: PairingRecord,
    pub secret: String,
}

/// First 8 hex digits of the CSR's SHA-256, shown on both devices.
pub fn fingerprint(csr: &[u8]) -> String {
    hex::encode(&Sha256::digest(csr)[..4])
}

/// The request's state as of now: a pending one past its expiry is expired.
pub fn state_now(record: &PairingRecord, now_ms: i64) -> PairingState {
    match PairingState::try_from(record.state).unwrap_or(PairingState::PairingPending) {
        PairingState::PairingPending if record.expires_unix_ms <= now_ms => {
            PairingState::PairingExpired
        }
        s => s,
    }
}

fn role(read_only: bool) -> Role {
    if read_only {
        Role::Viewer
    } else {
        Role::User
    }
}

/// What the owner's device is shown of a request.
pub fn shown(record: &PairingRecord) -> PairingRequest {
    PairingRequest {
        device: record.device.clone(),
        csr: record.csr.clone(),
        read_only: record.read_only,
        fingerprint: fingerprint(&record.csr),
        expires_unix_ms: record.expires_unix_ms,
    }
}

/// Records a device's request to be paired with `node_id`.
pub async fn request(
    store: &Store,
    node_id: &str,
    device: &str,
    csr: &[u8],
    read_only: bool,
) -> Result<Requested, PairingError> {
    registration::check_device(device)?;
    check_csr(csr, role(read_only)).map_err(RegistrationError::from)?;
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    // Zero reads as "unset" on the wire.
    let request_id = u64::from_be_bytes(id).max(1);
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    let (_, cluster_record) = cluster::load(store)?;
    let ttl_ms = cluster::effective_settings(&cluster_record).pairing_ttl_secs as i64 * 1000;
    let now = now_unix_ms();
    let record = PairingRecord {
        node_id: node_id.to_string(),
        request_id,
        device: device.to_string(),
        csr: csr.to_vec(),
        read_only,
        secret_sha256: Sha256::digest(secret.as_bytes()).to_vec(),
        state: PairingState::PairingPending as i32,
        device_cert: String::new(),
        created_unix_ms: now,
        expires_unix_ms: now + ttl_ms,
    };
    let key = keys::pairing(node_id, request_id);
    store.read_barrier().await?;
    store
        .update("the node's pairing requests", |store| {
            let node_key = keys::hosted_node(node_id);
            let Some((node_version, _)) = store.get::<HostedNode>(&node_key)? else {
                return Err(RegistrationError::NotRegistered.into());
            };
            if pending(store, node_id)?.len() >= MAX_PENDING {
                return Err(PairingError::TooMany);
            }
            // Two requests racing may pass the limit together by one or two; the
            // anonymous rate limits bound the rest.
            let txn = TxnBuilder::new()
                .require_version(&node_key, node_version)
                .require_absent(&key)
                .put(&key, &record);
            Ok(Attempt::Propose(txn.build(), ()))
        })
        .await?;
    Ok(Requested { record, secret })
}

/// The node's pending, unexpired requests, oldest first.
pub fn pending(store: &Store, node_id: &str) -> Result<Vec<PairingRecord>, StoreError> {
    let now = now_unix_ms();
    let mut list: Vec<PairingRecord> = list(store, node_id)?
        .into_iter()
        .filter(|r| state_now(r, now) == PairingState::PairingPending)
        .collect();
    list.sort_by_key(|r| r.created_unix_ms);
    Ok(list)
}

/// Every request of the node still kept.
pub fn list(store: &Store, node_id: &str) -> Result<Vec<PairingRecord>, StoreError> {
    Ok(store
        .list::<PairingRecord>(&keys::pairings_of(node_id))?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// The request, for the device holding its session secret.
pub fn outcome(
    store: &Store,
    node_id: &str,
    request_id: u64,
    secret: &str,
) -> Result<PairingRecord, PairingError> {
    let (_, record) = store
        .get::<PairingRecord>(&keys::pairing(node_id, request_id))?
        .ok_or(PairingError::NotFound)?;
    let given = Sha256::digest(secret.as_bytes());
    // Constant time: the digest of a guess says nothing about the stored one.
    if !bool::from(given.as_slice().ct_eq(&record.secret_sha256)) {
        return Err(PairingError::NotFound);
    }
    Ok(record)
}

/// The owner's answer to request `request_id`: on approval the device's certificate
/// is signed and kept with the request, and the device joins the node's devices.
pub async fn decide(
    store: &Store,
    node_id: &str,
    request_id: u64,
    approved: bool,
) -> Result<PairingState, PairingError> {
    let key = keys::pairing(node_id, request_id);
    let node_key = keys::hosted_node(node_id);
    store.read_barrier().await?;
    let (state, _) = store
        .update("the pairing request", |store| {
            let (version, mut record) = store
                .get::<PairingRecord>(&key)?
                .ok_or(PairingError::NotFound)?;
            match state_now(&record, now_unix_ms()) {
                PairingState::PairingPending => {}
                PairingState::PairingExpired => return Err(PairingError::Expired),
                PairingState::PairingApproved => return Err(PairingError::Decided("approved")),
                PairingState::PairingRefused => return Err(PairingError::Decided("refused")),
            }
            let mut txn = TxnBuilder::new().require_version(&key, version);
            if approved {
                let (node_version, mut node) = store
                    .get::<HostedNode>(&node_key)?
                    .ok_or(RegistrationError::NotRegistered)?;
                let csr = std::str::from_utf8(&record.csr)
                    .map_err(|_| RegistrationError::Issue(IssueError::CsrNotPem))?;
                let cn = owner_cn(node_id, &record.device);
                let cert = sign_leaf(store, csr, role(record.read_only), &cn, &[])?;
                record.device_cert = cert.cert_pem.clone();
                record.state = PairingState::PairingApproved as i32;
                if !node.devices.contains(&record.device) {
                    node.devices.push(record.device.clone());
                }
                txn = txn
                    .require_version(&node_key, node_version)
                    .put(&node_key, &node)
                    .put(keys::certificate(&cn), &cert);
            } else {
                record.state = PairingState::PairingRefused as i32;
            }
            let state = PairingState::try_from(record.state).unwrap_or_default();
            Ok::<_, PairingError>(Attempt::Propose(txn.put(&key, &record).build(), state))
        })
        .await?;
    tracing::info!(node = %node_id, request = request_id, approved, "pairing request decided");
    Ok(state)
}

/// Removes requests whose expiry is more than [`KEEP_AFTER_MS`] past.
pub async fn sweep(store: &Store) -> Result<usize, StoreError> {
    let cutoff = now_unix_ms() - KEEP_AFTER_MS;
    store
        .delete_expired(keys::PAIRINGS, |r: &PairingRecord| {
            r.expires_unix_ms <= cutoff
        })
        .await
}

/// The cluster's root CA, for an approved device's profile.
pub fn root_ca(store: &Store) -> Result<String, PairingError> {
    Ok(cluster::trust_bundle(&cluster::load(store)?.1))
}

#[cfg(test)]
mod tests {
    use lnswarm_common::pki::new_key_and_csr;

    use super::*;
    use crate::store::test_db::sealing_store;

    const NODE: &str = "node-a";

    async fn with_node() -> (tempfile::TempDir, Store) {
        let (dir, store) = sealing_store().await;
        let txn = TxnBuilder::new()
            .put(keys::hosted_node(NODE), &HostedNode::default())
            .build();
        store.propose(txn).await.unwrap();
        (dir, store)
    }

    async fn ask(store: &Store, device: &str) -> Result<Requested, PairingError> {
        let csr = new_key_and_csr(device, Some(Role::User)).unwrap().csr_pem;
        request(store, NODE, device, csr.as_bytes(), false).await
    }

    #[tokio::test]
    async fn only_the_session_secret_reads_the_outcome() {
        let (_dir, store) = with_node().await;
        let asked = ask(&store, "phone").await.unwrap();
        let id = asked.record.request_id;
        assert!(outcome(&store, NODE, id, &asked.secret).is_ok());
        assert!(matches!(
            outcome(&store, NODE, id, "guess"),
            Err(PairingError::NotFound)
        ));
        assert!(matches!(
            outcome(&store, "node-b", id, &asked.secret),
            Err(PairingError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_request_is_decided_once_and_refused_ones_carry_no_certificate() {
        let (_dir, store) = with_node().await;
        let asked = ask(&store, "evil").await.unwrap();
        let id = asked.record.request_id;
        assert_eq!(
            decide(&store, NODE, id, false).await.unwrap(),
            PairingState::PairingRefused
        );
        let record = outcome(&store, NODE, id, &asked.secret).unwrap();
        assert!(record.device_cert.is_empty());
        assert!(matches!(
            decide(&store, NODE, id, true).await,
            Err(PairingError::Decided("refused"))
        ));
        assert!(matches!(
            decide(&store, NODE, 12345, true).await,
            Err(PairingError::NotFound)
        ));
    }

    #[tokio::test]
    async fn refusals_before_anything_is_written() {
        let (_dir, store) = with_node().await;
        let csr = new_key_and_csr("phone", Some(Role::User)).unwrap().csr_pem;
        assert!(matches!(
            request(&store, "node-unknown", "phone", csr.as_bytes(), false).await,
            Err(PairingError::Registration(RegistrationError::NotRegistered))
        ));
        assert!(matches!(
            request(&store, NODE, "a/b", csr.as_bytes(), false).await,
            Err(PairingError::Registration(RegistrationError::BadDevice))
        ));
        // A CSR asking for an owner's role cannot be paired read-only.
        assert!(request(&store, NODE, "phone", csr.as_bytes(), true)
            .await
            .is_err());
        assert!(request(&store, NODE, "phone", b"not a csr", false)
            .await
            .is_err());
        assert!(list(&store, NODE).unwrap().is_empty());
        for i in 0..MAX_PENDING {
            ask(&store, &format!("d{i}")).await.unwrap();
        }
        assert!(matches!(
            ask(&store, "one-more").await,
            Err(PairingError::TooMany)
        ));
    }

    #[test]
    fn a_pending_request_past_its_expiry_is_expired() {
        let record = PairingRecord {
            expires_unix_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(state_now(&record, 999), PairingState::PairingPending);
        assert_eq!(state_now(&record, 1_000), PairingState::PairingExpired);
    }
}
