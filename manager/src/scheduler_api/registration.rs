//! Register and Recover: the two ways an owner's device gets a certificate for a
//! node, each authorized by a one-time challenge signed with the node key. All
//! checks happen before anything is written, and the write (node, seed, certificate,
//! consumed challenge) is one transaction, so a refusal stores nothing.

use lnswarm_common::{
    api::{
        ChallengeScope, HostedNode, HostedNodeState, InviteCodeRecord, RecoveryRequest,
        RegistrationRequest, Secret,
    },
    ids::now_unix_ms,
    node_keys::{self, NodeKeyError},
    pki::Role,
    seal,
};
use rand::RngCore;

use super::challenge::{self, ChallengeError};
use crate::{
    ca::{check_csr, sign_leaf, IssueError},
    cluster::{self, ClusterError},
    store::{keys, secrets, Applied, Store, StoreError, TxnBuilder},
};

/// Invite codes each registered node receives to hand out.
const INVITE_CODES_PER_NODE: usize = 3;

/// Why a registration or a recovery was refused or failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("node_id must be a 33-byte compressed public key")]
    BadNodeId,
    #[error("device must be 1-64 characters of letters, digits, '.', '_' or '-'")]
    BadDevice,
    #[error("registration needs an invite code")]
    InviteRequired,
    #[error("registration needs an invite code or an app credential (lnswarmctl app create)")]
    InviteOrAppRequired,
    #[error("a valid, unused invite code is required")]
    BadInvite,
    #[error("this cluster runs {cluster} nodes, not {requested}")]
    WrongNetwork { cluster: String, requested: String },
    #[error("the sealed seed cannot be opened with this cluster's key")]
    SealedSeed,
    #[error("the sealed seed is not a node seed: {0}")]
    NotASeed(NodeKeyError),
    #[error("the sealed seed does not yield this node id")]
    SeedMismatch,
    #[error("this node is already registered; use Recover")]
    AlreadyRegistered,
    #[error("this node is not registered")]
    NotRegistered,
    #[error("the node or challenge changed concurrently; get a new challenge and retry")]
    Contended,
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Owner certificate CN: `<node id>/<device>`.
pub fn owner_cn(node_id: &str, device: &str) -> String {
    format!("{node_id}/{device}")
}

/// A node id as sent on the wire (33 bytes) → hex, validated as a public key.
pub fn node_id_hex(raw: &[u8]) -> Result<String, RegistrationError> {
    node_keys::node_id_from_bytes(raw).map_err(|_| RegistrationError::BadNodeId)
}

pub(super) fn check_device(device: &str) -> Result<(), RegistrationError> {
    let ok = !device.is_empty()
        && device.len() <= 64
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RegistrationError::BadDevice)
    }
}

pub struct Registered {
    pub device_cert: String,
    pub root_ca: String,
}

/// Registers a node. `by_app` says the caller presented an app credential
/// (`lnswarm-app`): apps register for their users without invite codes.
pub async fn register(
    store: &Store,
    req: RegistrationRequest,
    by_app: bool,
) -> Result<Registered, RegistrationError> {
    let node_id = node_id_hex(&req.node_id)?;
    check_device(&req.device)?;
    let (_, cluster_record) = cluster::load(store)?;
    let settings = cluster::effective_settings(&cluster_record);
    // Anyone can make node ids, so registration is gated: by an invite code or an
    // app credential, unless the operator opened it.
    let needs_invite = settings.require_invite_code || (!by_app && !settings.open_registration);
    if needs_invite && req.invite_code.is_empty() {
        return Err(if settings.require_invite_code {
            RegistrationError::InviteRequired
        } else {
            RegistrationError::InviteOrAppRequired
        });
    }
    if req.network != settings.network {
        return Err(RegistrationError::WrongNetwork {
            cluster: settings.network,
            requested: req.network,
        });
    }
    let challenge = challenge::verify(
        store,
        ChallengeScope::Register,
        &node_id,
        &req.challenge,
        &req.signature,
    )?;
    let csr_pem = check_csr(&req.csr, Role::User)?;
    let seal_key = cluster::seal_secret_key(store, &cluster_record)?;
    let seed =
        seal::open(&seal_key, &req.sealed_seed).map_err(|_| RegistrationError::SealedSeed)?;
    let seeded_id = node_keys::node_id(&seed).map_err(RegistrationError::NotASeed)?;
    if seeded_id != node_id {
        return Err(RegistrationError::SeedMismatch);
    }
    let node_key = keys::hosted_node(&node_id);
    if store.state().get(&node_key)?.is_some() {
        return Err(RegistrationError::AlreadyRegistered);
    }

    let mut txn = challenge
        .consume(TxnBuilder::new())
        .require_absent(&node_key);
    if needs_invite {
        let k = keys::invite(&req.invite_code);
        let (version, mut invite) = store
            .get::<InviteCodeRecord>(&k)?
            .filter(|(_, i)| !i.redeemed && !req.invite_code.is_empty())
            .ok_or(RegistrationError::BadInvite)?;
        invite.redeemed = true;
        txn = txn.require_version(&k, version).put(&k, &invite);
    }
    let cn = owner_cn(&node_id, &req.device);
    let cert = sign_leaf(store, csr_pem, Role::User, &cn, &[])?;
    let now = now_unix_ms();
    let node = HostedNode {
        node_id: node_id.clone(),
        version: None,
        network: req.network.clone(),
        state: HostedNodeState::Registered as i32,
        created_unix_ms: now,
        since_unix_ms: now,
        devices: vec![req.device.clone()],
        ..Default::default()
    };
    // The seed is kept as a Secret; the dispatcher sends it only to the agent that
    // runs the node.
    let secret = Secret {
        id: keys::seed_secret_id(&node_id),
        version: None,
        data: seed,
    };
    txn = secrets::put(
        store,
        txn.put(&node_key, &node),
        &secret,
        Vec::<String>::new(),
    )?
    .put(keys::certificate(&cn), &cert);
    for _ in 0..INVITE_CODES_PER_NODE {
        let mut code = [0u8; 10];
        rand::thread_rng().fill_bytes(&mut code);
        let invite = InviteCodeRecord {
            code: hex::encode(code),
            owner_node_id: node_id.clone(),
            redeemed: false,
        };
        txn = txn.put(keys::invite(&invite.code), &invite);
    }
    match store.propose(txn.build()).await? {
        Applied::Committed(_) => {
            tracing::info!(node = %node_id, device = %req.device, "node registered");
            Ok(Registered {
                device_cert: cert.cert_pem,
                root_ca: crate::cluster::trust_bundle(&cluster_record),
            })
        }
        Applied::CheckFailed(_) if store.state().get(&node_key)?.is_some() => {
            Err(RegistrationError::AlreadyRegistered)
        }
        Applied::CheckFailed(_) => Err(ChallengeError::Refused("it was used concurrently").into()),
    }
}

pub async fn recover(store: &Store, req: RecoveryRequest) -> Result<Registered, RegistrationError> {
    let node_id = node_id_hex(&req.node_id)?;
    check_device(&req.device)?;
    let challenge = challenge::verify(
        store,
        ChallengeScope::Recover,
        &node_id,
        &req.challenge,
        &req.signature,
    )?;
    let csr_pem = check_csr(&req.csr, Role::User)?;
    let node_key = keys::hosted_node(&node_id);
    let (node_version, mut node) = store
        .get::<HostedNode>(&node_key)?
        .ok_or(RegistrationError::NotRegistered)?;
    let (_, cluster_record) = cluster::load(store)?;
    let cn = owner_cn(&node_id, &req.device);
    let cert = sign_leaf(store, csr_pem, Role::User, &cn, &[])?;
    if !node.devices.contains(&req.device) {
        node.devices.push(req.device.clone());
    }
    // Earlier device certificates stay valid: only this device's record is replaced.
    let txn = challenge
        .consume(TxnBuilder::new())
        .require_version(&node_key, node_version)
        .put(&node_key, &node)
        .put(keys::certificate(&cn), &cert)
        .build();
    match store.propose(txn).await? {
        Applied::Committed(_) => {
            tracing::info!(node = %node_id, device = %req.device, "owner device recovered");
            Ok(Registered {
                device_cert: cert.cert_pem,
                root_ca: crate::cluster::trust_bundle(&cluster_record),
            })
        }
        Applied::CheckFailed(_) => Err(RegistrationError::Contended),
    }
}

/// Invite codes owned by a node.
pub fn invite_codes(store: &Store, node_id: &str) -> Result<Vec<InviteCodeRecord>, StoreError> {
    Ok(store
        .list::<InviteCodeRecord>(keys::INVITES)?
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| i.owner_node_id == node_id)
        .collect())
}
