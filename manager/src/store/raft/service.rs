//! `lnswarm.v1.Raft`: what other managers call on this one. The authorization layer
//! admits only `swarm-manager` certificates of this cluster (and not revoked ones).

use futures::StreamExt;
use lnswarm_common::{
    api::{raft_server::Raft, *},
    authz::caller,
};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChangeV2, Message, MessageType};
use tonic::{Request, Response, Status, Streaming};

use super::{
    membership,
    snapshot_stream::{Reassembly, SnapshotStreamError},
    Event, RaftHandle,
};

pub use super::transport::MAX_RAFT_MESSAGE_BYTES;

pub struct RaftService {
    handle: RaftHandle,
    /// For the data key a joining (or migrating) manager asks for.
    store: crate::store::Store,
}

impl RaftService {
    /// The service of `store`'s raft node (a store without one serves no raft).
    pub fn new(store: crate::store::Store) -> Option<Self> {
        Some(RaftService {
            handle: store.raft()?.clone(),
            store,
        })
    }
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn caller_id<T>(req: &Request<T>) -> Result<String, Status> {
    caller(req)
        .map(|c| c.id.clone())
        .ok_or_else(|| Status::unauthenticated("a manager certificate is required"))
}

/// One raft message another manager sent, if it is one a correct peer could
/// send (raft-rs panics on some others, see admissible.rs).
pub(super) fn parse_message(bytes: &[u8]) -> Result<Message, Status> {
    let m = Message::parse_from_bytes(bytes).map_err(bad)?;
    // Snapshots come only by StreamRaftSnapshot, where their state is checked.
    if m.get_msg_type() == MessageType::MsgSnapshot {
        return Err(bad("snapshots are sent with StreamRaftSnapshot"));
    }
    super::admissible::message(&m).map_err(bad)?;
    Ok(m)
}

/// The raft messages of one ProcessRaftMessage call, all of them or an error.
pub(super) fn parse_messages(messages: &[Vec<u8>]) -> Result<Vec<Message>, Status> {
    messages.iter().map(|b| parse_message(b)).collect()
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn process_raft_message(
        &self,
        req: Request<ProcessRaftMessageRequest>,
    ) -> Result<Response<ProcessRaftMessageResponse>, Status> {
        // All or none: a call with one malformed message steps none of them.
        for m in parse_messages(&req.into_inner().messages)? {
            self.handle.send(Event::Raft(m)).await?;
        }
        Ok(Response::new(ProcessRaftMessageResponse {}))
    }

    async fn stream_raft_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<ProcessRaftMessageResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| bad(SnapshotStreamError::Empty))??;
        let mut snapshot = Reassembly::start(first).map_err(bad)?;
        while let Some(chunk) = stream.next().await {
            snapshot.push(chunk?).map_err(bad)?;
        }
        self.handle
            .send(Event::Raft(snapshot.finish().map_err(bad)?))
            .await?;
        Ok(Response::new(ProcessRaftMessageResponse {}))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let id = caller_id(&req)?;
        let addr = req.into_inner().addr;
        if addr.is_empty() {
            return Err(bad("the joiner's address is required"));
        }
        let mut answer = membership::join(&self.handle, &id, &addr).await?;
        // The joiner needs the data key to read the sealed values it will
        // replicate. The caller holds a manager certificate (the table admits
        // nothing else here).
        if let Some(key) = self.store.data_key() {
            answer.data_key = key.bytes().to_vec();
        }
        Ok(Response::new(answer))
    }

    async fn leave(&self, req: Request<LeaveRequest>) -> Result<Response<LeaveResponse>, Status> {
        let id = caller_id(&req)?;
        membership::remove(&self.handle, &id, false).await?;
        Ok(Response::new(LeaveResponse {}))
    }

    async fn resolve_address(
        &self,
        req: Request<ResolveAddressRequest>,
    ) -> Result<Response<ResolveAddressResponse>, Status> {
        let id = req.into_inner().raft_id;
        let addr = self
            .handle
            .inner
            .transport
            .addr_of(id)
            .ok_or_else(|| Status::not_found(format!("no member with raft id {id:x}")))?;
        Ok(Response::new(ResolveAddressResponse { addr }))
    }

    async fn forward_proposal(
        &self,
        req: Request<ForwardProposalRequest>,
    ) -> Result<Response<ForwardProposalResponse>, Status> {
        let req = req.into_inner();
        let txn = StoreTxn::decode(req.command.as_slice()).map_err(bad)?;
        let applied = if req.conf_change.is_empty() {
            self.handle.propose_here(txn).await?
        } else {
            let cc = ConfChangeV2::parse_from_bytes(&req.conf_change).map_err(bad)?;
            self.handle.conf_change_here(cc, txn).await?
        };
        Ok(Response::new(ForwardProposalResponse {
            index: applied.index(),
            check_failed: matches!(applied, crate::store::Applied::CheckFailed(_)),
        }))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self.handle.read_barrier().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn get_data_key(
        &self,
        req: Request<GetDataKeyRequest>,
    ) -> Result<Response<GetDataKeyResponse>, Status> {
        let wanted = req.into_inner().key_id;
        match self.store.data_key() {
            Some(k) if k.id() == wanted => Ok(Response::new(GetDataKeyResponse {
                data_key: k.bytes().to_vec(),
            })),
            _ => Err(Status::not_found(format!(
                "this manager does not hold data key {wanted}"
            ))),
        }
    }

    async fn get_status(
        &self,
        _req: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let s = self.handle.status();
        Ok(Response::new(GetStatusResponse {
            raft_id: s.raft_id,
            manager_id: self.handle.manager_id().to_string(),
            term: s.term,
            commit_index: s.commit,
            applied_index: s.applied,
            leader_raft_id: s.leader_id,
        }))
    }
}

#[cfg(test)]
#[path = "service_fuzz.rs"]
pub(super) mod fuzz;
