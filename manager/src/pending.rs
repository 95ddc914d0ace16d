//! Services whose behaviour lands with later work (the replicated quorum, the
//! Scheduler). They are served already so every RPC passes through
//! the authorization layer, and they answer UNIMPLEMENTED after the same ownership
//! checks the real handlers make. Each is deleted from here when it is implemented.

use std::pin::Pin;

use futures::Stream;
use lnswarm_common::{
    api::{scheduler_server::Scheduler, *},
    authz::require_owner,
};
use tonic::{Request, Response, Status, Streaming};

fn pending(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not available in this version"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct PendingScheduler;

/// The owner check the real handlers make first.
fn owner<T>(req: &Request<T>, node_id: &[u8]) -> Result<(), Status> {
    require_owner(req, &hex::encode(node_id)).map(|_| ())
}

#[tonic::async_trait]
impl Scheduler for PendingScheduler {
    type SignerRequestsStreamStream = BoxStream<SignerRequest>;

    async fn get_challenge(
        &self,
        _: Request<ChallengeRequest>,
    ) -> Result<Response<ChallengeResponse>, Status> {
        Err(pending("node registration"))
    }
    async fn register(
        &self,
        _: Request<RegistrationRequest>,
    ) -> Result<Response<RegistrationResponse>, Status> {
        Err(pending("node registration"))
    }
    async fn recover(
        &self,
        _: Request<RecoveryRequest>,
    ) -> Result<Response<RecoveryResponse>, Status> {
        Err(pending("node recovery"))
    }
    async fn schedule(
        &self,
        req: Request<ScheduleRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        owner(&req, &req.get_ref().node_id)?;
        Err(pending("scheduling"))
    }
    async fn get_node_info(
        &self,
        req: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        owner(&req, &req.get_ref().node_id)?;
        Err(pending("scheduling"))
    }
    async fn maybe_upgrade(
        &self,
        _: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        Err(pending("upgrades"))
    }
    async fn list_invite_codes(
        &self,
        _: Request<ListInviteCodesRequest>,
    ) -> Result<Response<ListInviteCodesResponse>, Status> {
        Err(pending("invite codes"))
    }
    async fn export_node(
        &self,
        _: Request<ExportNodeRequest>,
    ) -> Result<Response<ExportNodeResponse>, Status> {
        Err(pending("export"))
    }
    async fn add_outgoing_webhook(
        &self,
        req: Request<AddOutgoingWebhookRequest>,
    ) -> Result<Response<AddOutgoingWebhookResponse>, Status> {
        owner(&req, &req.get_ref().node_id)?;
        Err(pending("webhooks"))
    }
    async fn list_outgoing_webhooks(
        &self,
        req: Request<ListOutgoingWebhooksRequest>,
    ) -> Result<Response<ListOutgoingWebhooksResponse>, Status> {
        owner(&req, &req.get_ref().node_id)?;
        Err(pending("webhooks"))
    }
    async fn delete_webhooks(
        &self,
        req: Request<DeleteOutgoingWebhooksRequest>,
    ) -> Result<Response<Empty>, Status> {
        owner(&req, &req.get_ref().node_id)?;
        Err(pending("webhooks"))
    }
    async fn rotate_outgoing_webhook_secret(
        &self,
        req: Request<RotateOutgoingWebhookSecretRequest>,
    ) -> Result<Response<WebhookSecretResponse>, Status> {
        owner(&req, &req.get_ref().node_id)?;
        Err(pending("webhooks"))
    }
    async fn signer_requests_stream(
        &self,
        _: Request<Streaming<SignerResponse>>,
    ) -> Result<Response<Self::SignerRequestsStreamStream>, Status> {
        Err(pending("the signer stream"))
    }
}
