//! One-time challenges without a store write per challenge. GetChallenge is open to
//! anyone, so it must write nothing: a challenge is
//!
//! ```text
//! version (1) ‖ scope (1) ‖ expiry, Unix ms (8, BE) ‖ nonce (16) ‖ MAC (32)
//! MAC = HMAC-SHA256(cluster challenge key, version ‖ scope ‖ expiry ‖ nonce ‖ node id)
//! ```
//!
//! and is checked without a store read. A challenge that Register or Recover
//! consumes is recorded (by its MAC) in the same transaction, until it expires,
//! which keeps it single-use; the leader sweeps expired records.

use hmac::{Hmac, Mac};
use lnswarm_common::{
    api::{ChallengeRecord, ChallengeScope},
    ids::now_unix_ms,
    node_keys::verify_message,
};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{
    cluster::{self, ClusterError},
    store::{keys, Store, StoreError, TxnBuilder},
};

/// How long a challenge may be used.
pub const CHALLENGE_TTL_MS: i64 = 60_000;
const VERSION: u8 = 1;
const LEN: usize = 1 + 1 + 8 + 16 + 32;

/// Why a challenge could not be issued, or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("challenge refused: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn mac(key: &[u8], body: &[u8], node_id: &str) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(body);
    m.update(node_id.as_bytes());
    m.finalize().into_bytes().into()
}

/// A new challenge for `node_id` in `scope`, and when it expires. Reads the cluster
/// object; writes nothing.
pub fn issue(
    store: &Store,
    scope: ChallengeScope,
    node_id: &str,
) -> Result<(Vec<u8>, i64), ChallengeError> {
    let (_, record) = cluster::load(store)?;
    let key = cluster::challenge_key(store, &record)?;
    let expires = now_unix_ms() + CHALLENGE_TTL_MS;
    let mut out = Vec::with_capacity(LEN);
    out.push(VERSION);
    out.push(scope as i32 as u8);
    out.extend_from_slice(&expires.to_be_bytes());
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let tag = mac(&key, &out, node_id);
    out.extend_from_slice(&tag);
    Ok((out, expires))
}

/// A checked challenge: what to add to the transaction that consumes it.
pub struct Consumed {
    key: String,
    record: ChallengeRecord,
}

impl Consumed {
    /// Records the challenge as used (the transaction fails if it already was).
    pub fn consume(&self, txn: TxnBuilder) -> TxnBuilder {
        txn.require_absent(&self.key).put(&self.key, &self.record)
    }
}

/// Checks that `challenge` was issued by this cluster for `node_id` in `scope`, is
/// unexpired and unused, and is signed by the node key.
pub fn verify(
    store: &Store,
    scope: ChallengeScope,
    node_id: &str,
    challenge: &[u8],
    signature: &str,
) -> Result<Consumed, ChallengeError> {
    let refused = ChallengeError::Refused;
    if challenge.len() != LEN || challenge[0] != VERSION {
        return Err(refused("not a challenge from GetChallenge"));
    }
    let (body, tag) = challenge.split_at(LEN - 32);
    let (_, record) = cluster::load(store)?;
    let key = cluster::challenge_key(store, &record)?;
    if !bool::from(mac(&key, body, node_id).ct_eq(tag)) {
        return Err(refused(
            "not issued by this cluster, or issued for another node",
        ));
    }
    if i32::from(body[1]) != scope as i32 {
        return Err(refused("issued for another scope"));
    }
    let expires = i64::from_be_bytes(body[2..10].try_into().expect("8 bytes"));
    if expires <= now_unix_ms() {
        return Err(refused("expired"));
    }
    let key = keys::used_challenge(&hex::encode(tag));
    if store.state().get(&key)?.is_some() {
        return Err(refused("already used"));
    }
    if !verify_message(challenge, signature, node_id) {
        return Err(refused("signature is not the node key's"));
    }
    Ok(Consumed {
        key,
        record: ChallengeRecord {
            challenge: tag.to_vec(),
            scope: scope as i32,
            node_id: node_id.to_string(),
            expires_unix_ms: expires,
        },
    })
}

/// Deletes the records of used challenges that have expired (on the leader).
pub async fn sweep_expired_challenges(store: &Store) -> Result<usize, StoreError> {
    if !store.is_leader() {
        return Ok(0);
    }
    let now = now_unix_ms();
    store
        .delete_expired(keys::USED_CHALLENGES, |c: &ChallengeRecord| {
            c.expires_unix_ms <= now
        })
        .await
}

/// Sweeps expired challenge records, and old pairing requests, every minute until
/// `stop` fires (the manager runs it only while it leads).
pub async fn sweep_challenges(store: Store, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(CHALLENGE_TTL_MS as u64)) => {}
            () = stop.cancelled() => return,
        }
        if let Err(e) = sweep_expired_challenges(&store).await {
            tracing::warn!(error = %e, "sweeping expired challenges failed");
        }
        if let Err(e) = super::pairing::sweep(&store).await {
            tracing::warn!(error = %e, "sweeping old pairing requests failed");
        }
    }
}
