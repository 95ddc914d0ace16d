//! One-time challenges: 32 random bytes bound to a scope and a node id, valid for a
//! short time, kept in the replicated store so a leader change keeps them, and
//! consumed atomically with the registration or recovery they authorize.

use lnswarm_common::{
    api::{ChallengeRecord, ChallengeScope},
    ids::now_unix_ms,
    node_keys::verify_message,
};
use rand::RngCore;
use tonic::Status;

use crate::store::{Applied, Store, TxnBuilder};

/// How long a challenge may be used.
pub const CHALLENGE_TTL_MS: i64 = 60_000;
/// Live challenges one node id may hold at once, so an unauthenticated caller cannot
/// grow the store without bound for one node.
const MAX_LIVE_PER_NODE: usize = 8;

fn prefix(node_id: &str) -> String {
    format!("challenges/{node_id}/")
}

pub fn key(node_id: &str, challenge: &[u8]) -> String {
    format!("challenges/{node_id}/{}", hex::encode(challenge))
}

/// Issues a challenge for `node_id` in `scope`.
pub async fn issue(
    store: &Store,
    scope: ChallengeScope,
    node_id: &str,
) -> Result<ChallengeRecord, Status> {
    let now = now_unix_ms();
    let live = store
        .list::<ChallengeRecord>(&prefix(node_id))?
        .into_iter()
        .filter(|(_, c)| c.expires_unix_ms > now)
        .count();
    if live >= MAX_LIVE_PER_NODE {
        return Err(Status::resource_exhausted(
            "too many outstanding challenges for this node; use one or wait a minute",
        ));
    }
    let mut challenge = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut challenge);
    let record = ChallengeRecord {
        challenge: challenge.clone(),
        scope: scope as i32,
        node_id: node_id.to_string(),
        expires_unix_ms: now + CHALLENGE_TTL_MS,
    };
    let k = key(node_id, &challenge);
    match store
        .propose(
            TxnBuilder::new()
                .require_absent(&k)
                .put(&k, &record)
                .build(),
        )
        .await?
    {
        Applied::Committed(_) => Ok(record),
        Applied::CheckFailed(_) => Err(Status::internal("challenge collision; retry")),
    }
}

/// Checks that `challenge` was issued for `node_id` in `scope`, is unexpired, and is
/// signed by the node key. Returns the store key and version to consume it with.
pub fn verify(
    store: &Store,
    scope: ChallengeScope,
    node_id: &str,
    challenge: &[u8],
    signature: &str,
) -> Result<(String, u64), Status> {
    let refused = |why: &str| Status::unauthenticated(format!("challenge refused: {why}"));
    if challenge.len() != 32 {
        return Err(refused("a challenge is 32 bytes"));
    }
    let k = key(node_id, challenge);
    let (version, record) = store
        .get::<ChallengeRecord>(&k)?
        .ok_or_else(|| refused("unknown, already used, or issued for another node"))?;
    if record.scope != scope as i32 {
        return Err(refused("issued for another scope"));
    }
    if record.expires_unix_ms <= now_unix_ms() {
        return Err(refused("expired"));
    }
    if !verify_message(challenge, signature, node_id) {
        return Err(refused("signature is not the node key's"));
    }
    Ok((k, version))
}

/// Deletes expired challenges (run periodically on the leader).
pub async fn sweep_expired_challenges(store: &Store) -> Result<usize, Status> {
    if !store.is_leader() {
        return Ok(0);
    }
    let now = now_unix_ms();
    let expired: Vec<String> = store
        .state()
        .scan("challenges/")?
        .into_iter()
        .filter(|(_, v)| {
            v.decode::<ChallengeRecord>()
                .map(|c| c.expires_unix_ms <= now)
                .unwrap_or(true)
        })
        .map(|(k, _)| k)
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    let mut txn = TxnBuilder::new();
    for k in &expired {
        txn = txn.delete_tagged(k, Vec::<String>::new());
    }
    store.propose(txn.build()).await?;
    Ok(expired.len())
}

/// Sweeps expired challenges every minute while this manager leads.
pub fn spawn_challenge_sweeper(store: Store) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(CHALLENGE_TTL_MS as u64)).await;
            if let Err(e) = sweep_expired_challenges(&store).await {
                tracing::warn!(error = %e, "sweeping expired challenges failed");
            }
        }
    });
}
