//! Who is in the quorum: adding a joining manager as a voter, removing one without
//! breaking quorum (its certificate is revoked in the same change), the operator's
//! view of every member, and forgetting the lost members after
//! `--force-new-cluster`. Every change is a ConfChangeV2 whose context carries the
//! store writes that go with it, so membership and the managers/<id> records never
//! disagree.

use std::time::Duration;

use futures::future::join_all;
use lnswarm_common::api::{
    CertificateRecord, GetStatusRequest, JoinResponse, Manager, ManagerInfo, RaftMember,
};
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tracing::{info, warn};

use super::RaftHandle;
use crate::store::{keys, StoreError, TxnBuilder};

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("no manager {0:?}")]
    NotFound(String),
    #[error("cannot remove the last manager")]
    LastManager,
    #[error("removing {id} would leave {reachable} reachable of {remaining} managers, below the quorum of {quorum}; use --force to remove it anyway")]
    WouldBreakQuorum {
        id: String,
        reachable: usize,
        remaining: usize,
        quorum: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn single(kind: ConfChangeType, raft_id: u64) -> ConfChangeV2 {
    let mut c = ConfChangeSingle::default();
    c.set_change_type(kind);
    c.node_id = raft_id;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(c);
    cc
}

fn managers(h: &RaftHandle) -> Result<Vec<Manager>, StoreError> {
    h.state()
        .scan(keys::MANAGERS)?
        .into_iter()
        .map(|(_, v)| v.decode::<Manager>())
        .collect()
}

fn members(h: &RaftHandle) -> Result<Vec<RaftMember>, StoreError> {
    Ok(managers(h)?
        .into_iter()
        .map(|m| RaftMember {
            raft_id: m.raft_id,
            manager_id: m.id,
            addr: m.addr,
        })
        .collect())
}

/// Adds manager `id` (already holding a manager certificate) at `addr` as a voter.
/// Idempotent: a retry after a lost answer returns the same raft id.
pub async fn join(h: &RaftHandle, id: &str, addr: &str) -> Result<JoinResponse, MembershipError> {
    h.read_barrier().await?;
    let key = keys::manager(id);
    if let Some(v) = h.state().get(&key)? {
        let m: Manager = v.decode()?;
        if h.status().voters.contains(&m.raft_id) {
            return Ok(JoinResponse {
                raft_id: m.raft_id,
                members: members(h)?,
                ..Default::default()
            });
        }
    }
    let taken: Vec<u64> = managers(h)?.iter().map(|m| m.raft_id).collect();
    let raft_id = loop {
        let candidate = rand::random::<u64>() >> 1;
        if candidate > 1 && !taken.contains(&candidate) {
            break candidate;
        }
    };
    let record = Manager {
        id: id.to_string(),
        addr: addr.to_string(),
        raft_id,
    };
    let txn = TxnBuilder::new().put(&key, &record).build();
    h.conf_change(single(ConfChangeType::AddNode, raft_id), txn)
        .await?;
    info!(manager = %id, raft_id = %format!("{raft_id:x}"), %addr, "manager joined");
    Ok(JoinResponse {
        raft_id,
        members: members(h)?,
        ..Default::default()
    })
}

/// Asks a member for its status; `None` when it does not answer in time.
async fn peer_status(
    h: &RaftHandle,
    raft_id: u64,
) -> Option<lnswarm_common::api::GetStatusResponse> {
    if raft_id == h.raft_id() {
        let s = h.status();
        return Some(lnswarm_common::api::GetStatusResponse {
            raft_id,
            manager_id: h.manager_id().to_string(),
            term: s.term,
            commit_index: s.commit,
            applied_index: s.applied,
            leader_raft_id: s.leader_id,
        });
    }
    let mut client = h.client(raft_id)?;
    let mut req = tonic::Request::new(GetStatusRequest {});
    req.set_timeout(Duration::from_secs(1));
    tokio::time::timeout(Duration::from_millis(1500), client.get_status(req))
        .await
        .ok()?
        .ok()
        .map(|r| r.into_inner())
}

/// Every manager with its own view of term and indexes, as far as it answers.
pub async fn list(h: &RaftHandle) -> Result<Vec<ManagerInfo>, MembershipError> {
    let all = managers(h)?;
    let statuses = join_all(all.iter().map(|m| peer_status(h, m.raft_id))).await;
    let mine = h.status();
    let leader = if mine.leader_id != 0 {
        mine.leader_id
    } else {
        statuses
            .iter()
            .flatten()
            .map(|s| s.leader_raft_id)
            .find(|l| *l != 0)
            .unwrap_or(0)
    };
    Ok(all
        .into_iter()
        .zip(statuses)
        .map(|(m, s)| ManagerInfo {
            leader: m.raft_id == leader,
            reachable: s.is_some(),
            term: s.as_ref().map(|s| s.term).unwrap_or(0),
            commit_index: s.as_ref().map(|s| s.commit_index).unwrap_or(0),
            applied_index: s.as_ref().map(|s| s.applied_index).unwrap_or(0),
            id: m.id,
            raft_id: m.raft_id,
            addr: m.addr,
        })
        .collect())
}

/// Store writes that retire manager `id`: its record goes, its certificate is
/// revoked.
fn retire(h: &RaftHandle, id: &str, mut txn: TxnBuilder) -> Result<TxnBuilder, StoreError> {
    txn = txn.delete_tagged(keys::manager(id), Vec::<String>::new());
    let cert_key = keys::certificate(id);
    if let Some(v) = h.state().get(&cert_key)? {
        let mut cert: CertificateRecord = v.decode()?;
        cert.revoked = true;
        txn = txn.put(cert_key, &cert);
    }
    Ok(txn)
}

/// Removes manager `id` from the quorum and revokes its certificate. Refuses when
/// the managers left that answer would be fewer than their quorum, unless `force`.
pub async fn remove(h: &RaftHandle, id: &str, force: bool) -> Result<(), MembershipError> {
    h.read_barrier().await?;
    let target = managers(h)?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| MembershipError::NotFound(id.to_string()))?;
    let voters = h.status().voters;
    if voters.len() <= 1 {
        return Err(MembershipError::LastManager);
    }
    let remaining: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|v| *v != target.raft_id)
        .collect();
    let reachable = join_all(remaining.iter().map(|v| peer_status(h, *v)))
        .await
        .into_iter()
        .filter(Option::is_some)
        .count();
    let quorum = remaining.len() / 2 + 1;
    if reachable < quorum && !force {
        return Err(MembershipError::WouldBreakQuorum {
            id: id.to_string(),
            reachable,
            remaining: remaining.len(),
            quorum,
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let txn = retire(h, id, TxnBuilder::new())?.build();
        match h
            .conf_change(single(ConfChangeType::RemoveNode, target.raft_id), txn)
            .await
        {
            Ok(_) => break,
            // The leader hands off leadership before removing itself, and only one
            // membership change may be in flight: retry for a while.
            Err(StoreError::Unavailable(m)) if tokio::time::Instant::now() < deadline => {
                warn!(reason = %m, "retrying the removal");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    info!(manager = %id, raft_id = %format!("{:x}", target.raft_id), "manager removed");
    Ok(())
}

/// After `--force-new-cluster`: once this manager leads, drops the records of the
/// members it no longer has and revokes their certificates, so they cannot come
/// back with the old membership.
pub async fn forget_others(h: &RaftHandle) {
    let mut leadership = h.leadership();
    let _ = leadership.wait_for(|l| l.is_leader).await;
    loop {
        let result: Result<(), StoreError> = async {
            let mut txn = TxnBuilder::new();
            let mut forgotten = Vec::new();
            for m in managers(h)? {
                if m.raft_id != h.raft_id() {
                    txn = retire(h, &m.id, txn)?;
                    forgotten.push(m.id);
                }
            }
            if !forgotten.is_empty() {
                h.propose(txn.build()).await?;
                info!(?forgotten, "forgot the members lost with the old quorum");
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "forgetting lost members failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
