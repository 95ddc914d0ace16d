//! The NodeState handlers: the caller must be the node whose keys it names (its
//! certificate's CN), and the fence's errors become gRPC codes here and only here.

use lnswarm_common::{
    api::{
        node_state_server::NodeState, LoadNodeStateRequest, LoadNodeStateResponse,
        PeerAddressesRequest, PeerAddressesResponse, RecordEventsRequest, RecordEventsResponse,
        ReportIdleRequest, ReportIdleResponse, WriteNodeStateRequest, WriteNodeStateResponse,
    },
    authz::caller,
    pki::Role,
};
use tonic::{Request, Response, Status};
use tracing::warn;

use super::{
    fence::{self, FenceError},
    idle::{self, Idle, IdleError},
};
use crate::{
    store::Store,
    webhooks::events::{self, EventError},
};

/// Largest NodeState message either way: a node's whole state at load, or a batch
/// of writes (a ChannelManager with many channels is megabytes).
pub const MAX_NODE_STATE_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub struct NodeStateService {
    store: Store,
}

impl NodeStateService {
    pub fn new(store: Store) -> Self {
        NodeStateService { store }
    }
}

/// The calling node, which must be `node_id` (a well-formed one).
fn own_node<T>(req: &Request<T>, node_id: &str) -> Result<(), Status> {
    if !lnswarm_common::ids::is_node_id_hex(node_id) {
        return Err(Status::invalid_argument(
            "node_id must be the node's id (66 hex characters)",
        ));
    }
    let who = caller(req).ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    if who.role != Role::Node || who.node_id.as_deref() != Some(node_id) {
        return Err(Status::permission_denied(
            "a node may reach only its own state",
        ));
    }
    Ok(())
}

impl From<FenceError> for Status {
    fn from(e: FenceError) -> Self {
        match e {
            FenceError::Stale { .. }
            | FenceError::NoLease { .. }
            | FenceError::OutOfOrder { .. } => Status::failed_precondition(e.to_string()),
            FenceError::InvalidKey(_) | FenceError::TooMany => {
                Status::invalid_argument(e.to_string())
            }
            FenceError::Store(e) => e.into(),
        }
    }
}

impl From<IdleError> for Status {
    fn from(e: IdleError) -> Self {
        match e {
            IdleError::Fence(e) => e.into(),
            IdleError::Cluster(e) => e.into(),
        }
    }
}

impl From<EventError> for Status {
    fn from(e: EventError) -> Self {
        match e {
            EventError::Fence(e) => e.into(),
            EventError::Invalid(_) => Status::invalid_argument(e.to_string()),
            EventError::Store(e) => e.into(),
        }
    }
}

#[tonic::async_trait]
impl NodeState for NodeStateService {
    async fn load(
        &self,
        req: Request<LoadNodeStateRequest>,
    ) -> Result<Response<LoadNodeStateResponse>, Status> {
        own_node(&req, &req.get_ref().node_id)?;
        let req = req.into_inner();
        let (entries, head_version) = fence::load(&self.store, &req.node_id, req.epoch).await?;
        Ok(Response::new(LoadNodeStateResponse {
            entries,
            head_version,
        }))
    }

    async fn write(
        &self,
        req: Request<WriteNodeStateRequest>,
    ) -> Result<Response<WriteNodeStateResponse>, Status> {
        own_node(&req, &req.get_ref().node_id)?;
        let req = req.into_inner();
        let order = fence::WriteOrder {
            incarnation: req.incarnation,
            seq: req.seq,
            after_version: req.after_version,
        };
        let started = std::time::Instant::now();
        let written = fence::write(&self.store, &req.node_id, req.epoch, order, req.ops).await;
        let outcome = match &written {
            Ok(_) => "committed",
            Err(FenceError::Stale { .. }) => "stale",
            Err(_) => "failed",
        };
        let events = crate::metrics::events();
        crate::metrics::record(
            &events.node_state_writes,
            &events.node_state_write_seconds,
            outcome,
            started,
        );
        let index = written.inspect_err(|e| {
            if matches!(e, FenceError::Stale { .. }) {
                warn!(node = %req.node_id, epoch = req.epoch, "refused a write from a stale copy");
            }
        })?;
        Ok(Response::new(WriteNodeStateResponse { index }))
    }

    async fn peer_addresses(
        &self,
        req: Request<PeerAddressesRequest>,
    ) -> Result<Response<PeerAddressesResponse>, Status> {
        own_node(&req, &req.get_ref().node_id)?;
        let req = req.into_inner();
        let addresses = super::peers::addresses(&self.store, &req.node_id, req.epoch, &req.peers)?;
        Ok(Response::new(PeerAddressesResponse { addresses }))
    }

    async fn record_events(
        &self,
        req: Request<RecordEventsRequest>,
    ) -> Result<Response<RecordEventsResponse>, Status> {
        own_node(&req, &req.get_ref().node_id)?;
        let req = req.into_inner();
        let deliveries = events::record(&self.store, &req.node_id, req.epoch, &req.events)
            .await
            .inspect_err(|e| {
                if matches!(e, EventError::Fence(FenceError::Stale { .. })) {
                    warn!(node = %req.node_id, epoch = req.epoch, "refused events from a stale copy");
                }
            })?;
        Ok(Response::new(RecordEventsResponse { deliveries }))
    }

    async fn report_idle(
        &self,
        req: Request<ReportIdleRequest>,
    ) -> Result<Response<ReportIdleResponse>, Status> {
        own_node(&req, &req.get_ref().node_id)?;
        let req = req.into_inner();
        let answer =
            match idle::report(&self.store, &req.node_id, req.epoch, req.idle_for_ms).await? {
                Idle::Stopping => ReportIdleResponse {
                    stopping: true,
                    ask_again_after_ms: 0,
                },
                Idle::AskAgainAfter(ms) => ReportIdleResponse {
                    stopping: false,
                    ask_again_after_ms: ms,
                },
            };
        Ok(Response::new(answer))
    }
}
