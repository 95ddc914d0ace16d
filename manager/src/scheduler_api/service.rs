//! The Scheduler service's handlers. Owner RPCs that name a node check the caller's
//! certificate against it first (`authz::require_owner`). The helper modules
//! return their own errors; they become gRPC statuses only here.

use std::pin::Pin;

use futures::Stream;
use lnswarm_common::{
    api::{scheduler_server::Scheduler, *},
    authz::{caller, require_owner, require_reader},
};
use tonic::{Request, Response, Status, Streaming};

use super::{
    challenge::{self, ChallengeError},
    device_renewal::{self, DeviceRenewalError},
    export::{self, ExportError},
    pairing::{self, PairingError},
    registration::{self, RegistrationError},
    schedule::{self, ScheduleError},
};
use crate::{
    cluster,
    orchestrator::upgrades,
    store::Store,
    webhooks::registry::{self as webhooks, WebhookError},
};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct SchedulerService {
    store: Store,
}

impl SchedulerService {
    pub fn new(store: Store) -> Self {
        SchedulerService { store }
    }
}

impl From<ChallengeError> for Status {
    fn from(e: ChallengeError) -> Self {
        match e {
            ChallengeError::Refused(_) => Status::unauthenticated(e.to_string()),
            ChallengeError::Cluster(e) => e.into(),
            ChallengeError::Store(e) => e.into(),
        }
    }
}

impl From<RegistrationError> for Status {
    fn from(e: RegistrationError) -> Self {
        use RegistrationError::*;
        match e {
            BadNodeId
            | BadDevice
            | WrongNetwork { .. }
            | SealedSeed
            | NotASeed(_)
            | SeedMismatch => Status::invalid_argument(e.to_string()),
            InviteRequired | InviteOrAppRequired | BadInvite => {
                Status::permission_denied(e.to_string())
            }
            AlreadyRegistered => Status::already_exists(e.to_string()),
            NotRegistered => Status::not_found(e.to_string()),
            Contended => Status::aborted(e.to_string()),
            Challenge(e) => e.into(),
            Issue(e) => e.into(),
            Cluster(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

impl From<ScheduleError> for Status {
    fn from(e: ScheduleError) -> Self {
        use ScheduleError::*;
        match e {
            NotRegistered => Status::not_found(e.to_string()),
            Exported => Status::failed_precondition(e.to_string()),
            CannotRun(_) | NotRunning(_) | ShuttingDown => Status::unavailable(e.to_string()),
            TimedOut { .. } => Status::deadline_exceeded(e.to_string()),
            BadNodeId | ClusterCa(_) => Status::internal(e.to_string()),
            Cluster(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

impl From<ExportError> for Status {
    fn from(e: ExportError) -> Self {
        use ExportError::*;
        match e {
            NotRegistered => Status::not_found(e.to_string()),
            NotExported => Status::failed_precondition(e.to_string()),
            PastEnd { .. } => Status::out_of_range(e.to_string()),
            StillRunning { .. } => Status::unavailable(e.to_string()),
            Concurrent => Status::aborted(e.to_string()),
            BadNodeId | Damaged(_) | Crypt(_) => Status::internal(e.to_string()),
            Fence(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

impl From<WebhookError> for Status {
    fn from(e: WebhookError) -> Self {
        use WebhookError::*;
        match e {
            NotRegistered | NotFound(_) => Status::not_found(e.to_string()),
            TooMany => Status::resource_exhausted(e.to_string()),
            BadUri(_) => Status::invalid_argument(e.to_string()),
            Cluster(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

impl From<PairingError> for Status {
    fn from(e: PairingError) -> Self {
        use PairingError::*;
        match e {
            Registration(e) => e.into(),
            TooMany => Status::resource_exhausted(e.to_string()),
            NotFound => Status::not_found(e.to_string()),
            Decided(_) | Expired => Status::failed_precondition(e.to_string()),
            Issue(e) => e.into(),
            Cluster(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

impl From<DeviceRenewalError> for Status {
    fn from(e: DeviceRenewalError) -> Self {
        use DeviceRenewalError::*;
        match e {
            NotRotating | AlreadyCurrent => Status::failed_precondition(e.to_string()),
            Issue(e) => e.into(),
            Cluster(e) => e.into(),
        }
    }
}

/// The caller's own node id (owner certificates name it).
fn own_node<T>(req: &Request<T>) -> Result<String, Status> {
    caller(req)
        .and_then(|who| who.node_id.clone())
        .ok_or_else(|| Status::permission_denied("an owner certificate is required"))
}

fn owner<T>(req: &Request<T>, node_id: &[u8]) -> Result<String, Status> {
    let hex = registration::node_id_hex(node_id)?;
    require_owner(req, &hex)?;
    Ok(hex)
}

/// As [`owner`], also for the owner's read-only devices.
fn reader<T>(req: &Request<T>, node_id: &[u8]) -> Result<String, Status> {
    let hex = registration::node_id_hex(node_id)?;
    require_reader(req, &hex)?;
    Ok(hex)
}

/// How long GetPairing with `wait` waits for the owner's answer.
const PAIRING_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How often a SignerRequestsStream looks for new requests.
const SIGNER_POLL: std::time::Duration = std::time::Duration::from_millis(250);

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type SignerRequestsStreamStream = BoxStream<SignerRequest>;
    type DownloadExportStream = BoxStream<ExportChunk>;

    async fn get_challenge(
        &self,
        req: Request<ChallengeRequest>,
    ) -> Result<Response<ChallengeResponse>, Status> {
        let req = req.into_inner();
        let scope = ChallengeScope::try_from(req.scope)
            .map_err(|_| Status::invalid_argument("unknown challenge scope"))?;
        let node_id = registration::node_id_hex(&req.node_id)?;
        let (challenge, expires_unix_ms) = challenge::issue(&self.store, scope, &node_id)?;
        let (_, cluster_record) = cluster::load(&self.store)?;
        Ok(Response::new(ChallengeResponse {
            challenge,
            expires_unix_ms,
            network: cluster_record
                .settings
                .map(|s| s.network)
                .unwrap_or_default(),
            seal_public_key: cluster_record.seal_public_key,
        }))
    }

    async fn register(
        &self,
        req: Request<RegistrationRequest>,
    ) -> Result<Response<RegistrationResponse>, Status> {
        let by_app = caller(&req).is_some_and(|who| who.role == lnswarm_common::pki::Role::App);
        let done = registration::register(&self.store, req.into_inner(), by_app).await?;
        Ok(Response::new(RegistrationResponse {
            device_cert: done.device_cert.into_bytes(),
            root_ca: done.root_ca.into_bytes(),
        }))
    }

    async fn recover(
        &self,
        req: Request<RecoveryRequest>,
    ) -> Result<Response<RecoveryResponse>, Status> {
        let done = registration::recover(&self.store, req.into_inner()).await?;
        Ok(Response::new(RecoveryResponse {
            device_cert: done.device_cert.into_bytes(),
            root_ca: done.root_ca.into_bytes(),
        }))
    }

    async fn schedule(
        &self,
        req: Request<ScheduleRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        let node_id = reader(&req, &req.get_ref().node_id)?;
        self.store.read_barrier().await?;
        Ok(Response::new(
            schedule::schedule(&self.store, &node_id).await?,
        ))
    }

    async fn renew_device_certificate(
        &self,
        req: Request<RenewDeviceCertificateRequest>,
    ) -> Result<Response<RenewDeviceCertificateResponse>, Status> {
        reader(&req, &req.get_ref().node_id)?;
        let who = caller(&req)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("an owner certificate is required"))?;
        let presented = req
            .extensions()
            .get::<lnswarm_common::tls::PeerInfo>()
            .and_then(|p| p.certificates.first().cloned())
            .ok_or_else(|| Status::unauthenticated("an owner certificate is required"))?;
        let (cert, roots) =
            device_renewal::renew(&self.store, &who, &presented, &req.get_ref().csr)?;
        tracing::info!(device = %who.id, "device certificate renewed for the root CA rotation");
        Ok(Response::new(RenewDeviceCertificateResponse {
            device_cert: cert.into_bytes(),
            root_ca: roots.into_bytes(),
        }))
    }

    async fn get_node_info(
        &self,
        req: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        let node_id = reader(&req, &req.get_ref().node_id)?;
        self.store.read_barrier().await?;
        let info = if req.get_ref().wait {
            schedule::wait(&self.store, &node_id, None).await?
        } else {
            schedule::current(&self.store, &node_id)?
        };
        Ok(Response::new(info))
    }

    async fn maybe_upgrade(
        &self,
        req: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        let node_id = own_node(&req)?;
        self.store.read_barrier().await?;
        let old = upgrades::maybe_upgrade(&self.store, &node_id).await?;
        Ok(Response::new(UpgradeResponse {
            old_version: old.unwrap_or_default(),
        }))
    }

    async fn list_invite_codes(
        &self,
        req: Request<ListInviteCodesRequest>,
    ) -> Result<Response<ListInviteCodesResponse>, Status> {
        let node_id = own_node(&req)?;
        let codes = registration::invite_codes(&self.store, &node_id)?;
        Ok(Response::new(ListInviteCodesResponse {
            invite_code_list: codes
                .into_iter()
                .map(|c| InviteCode {
                    code: c.code,
                    is_redeemed: c.redeemed,
                })
                .collect(),
        }))
    }

    async fn export_node(
        &self,
        req: Request<ExportNodeRequest>,
    ) -> Result<Response<ExportNodeResponse>, Status> {
        let node_id = own_node(&req)?;
        let record = export::export(&self.store, &node_id).await?;
        Ok(Response::new(ExportNodeResponse {
            url: export::url(&record),
            size: record.size,
            sha256: record.sha256,
            exported_unix_ms: record.exported_unix_ms,
        }))
    }

    async fn download_export(
        &self,
        req: Request<DownloadExportRequest>,
    ) -> Result<Response<Self::DownloadExportStream>, Status> {
        let node_id = own_node(&req)?;
        self.store.read_barrier().await?;
        let record = export::record(&self.store, &node_id)?;
        let (total_size, sha256) = (record.size, record.sha256.clone());
        let pieces = export::pieces(&self.store, &record, req.get_ref().offset)?;
        let chunks = futures::stream::iter(pieces.map(move |piece| {
            let (offset, data) = piece?;
            Ok(ExportChunk {
                offset,
                data,
                total_size,
                sha256: sha256.clone(),
            })
        }));
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn add_outgoing_webhook(
        &self,
        req: Request<AddOutgoingWebhookRequest>,
    ) -> Result<Response<AddOutgoingWebhookResponse>, Status> {
        let node_id = owner(&req, &req.get_ref().node_id)?;
        let added = webhooks::add(&self.store, &node_id, &req.get_ref().uri).await?;
        Ok(Response::new(AddOutgoingWebhookResponse {
            id: added.id,
            secret: added.secret,
        }))
    }

    async fn list_outgoing_webhooks(
        &self,
        req: Request<ListOutgoingWebhooksRequest>,
    ) -> Result<Response<ListOutgoingWebhooksResponse>, Status> {
        let node_id = owner(&req, &req.get_ref().node_id)?;
        self.store.read_barrier().await?;
        let outgoing_webhooks = webhooks::list(&self.store, &node_id)?
            .into_iter()
            .map(|w| Webhook {
                id: w.id,
                uri: w.uri,
            })
            .collect();
        Ok(Response::new(ListOutgoingWebhooksResponse {
            outgoing_webhooks,
        }))
    }

    async fn delete_webhooks(
        &self,
        req: Request<DeleteOutgoingWebhooksRequest>,
    ) -> Result<Response<Empty>, Status> {
        let node_id = owner(&req, &req.get_ref().node_id)?;
        webhooks::delete(&self.store, &node_id, &req.get_ref().ids).await?;
        Ok(Response::new(Empty {}))
    }

    async fn rotate_outgoing_webhook_secret(
        &self,
        req: Request<RotateOutgoingWebhookSecretRequest>,
    ) -> Result<Response<WebhookSecretResponse>, Status> {
        let node_id = owner(&req, &req.get_ref().node_id)?;
        let secret = webhooks::rotate(&self.store, &node_id, req.get_ref().webhook_id).await?;
        Ok(Response::new(WebhookSecretResponse { secret }))
    }

    async fn signer_requests_stream(
        &self,
        req: Request<Streaming<SignerResponse>>,
    ) -> Result<Response<Self::SignerRequestsStreamStream>, Status> {
        let node_id = own_node(&req)?;
        let signer = super::signer::SignerSession::new(self.store.clone(), node_id, SIGNER_POLL);
        Ok(Response::new(Box::pin(signer.run(req.into_inner()))))
    }

    async fn pair_device(
        &self,
        req: Request<PairDeviceRequest>,
    ) -> Result<Response<PairDeviceResponse>, Status> {
        let req = req.into_inner();
        let node_id = registration::node_id_hex(&req.node_id)?;
        let asked =
            pairing::request(&self.store, &node_id, &req.device, &req.csr, req.read_only).await?;
        tracing::info!(node = %node_id, request = asked.record.request_id, device = %req.device, read_only = req.read_only, "pairing requested");
        Ok(Response::new(PairDeviceResponse {
            request_id: asked.record.request_id,
            session_secret: asked.secret,
            fingerprint: pairing::fingerprint(&asked.record.csr),
            expires_unix_ms: asked.record.expires_unix_ms,
        }))
    }

    async fn get_pairing(
        &self,
        req: Request<GetPairingRequest>,
    ) -> Result<Response<GetPairingResponse>, Status> {
        let req = req.into_inner();
        let node_id = registration::node_id_hex(&req.node_id)?;
        self.store.read_barrier().await?;
        let deadline = tokio::time::Instant::now() + PAIRING_WAIT;
        loop {
            let record =
                pairing::outcome(&self.store, &node_id, req.request_id, &req.session_secret)?;
            let state = pairing::state_now(&record, lnswarm_common::ids::now_unix_ms());
            let waiting = req.wait
                && state == PairingState::PairingPending
                && tokio::time::Instant::now() < deadline;
            if !waiting {
                let root_ca = if state == PairingState::PairingApproved {
                    pairing::root_ca(&self.store)?
                } else {
                    String::new()
                };
                return Ok(Response::new(GetPairingResponse {
                    state: state as i32,
                    device_cert: record.device_cert,
                    root_ca,
                }));
            }
            tokio::time::sleep(SIGNER_POLL).await;
        }
    }

    async fn list_pairings(
        &self,
        req: Request<ListPairingsRequest>,
    ) -> Result<Response<ListPairingsResponse>, Status> {
        let node_id = owner(&req, &req.get_ref().node_id)?;
        self.store.read_barrier().await?;
        let now = lnswarm_common::ids::now_unix_ms();
        let pairings = pairing::list(&self.store, &node_id)?
            .iter()
            .map(|r| Pairing {
                request_id: r.request_id,
                request: Some(pairing::shown(r)),
                state: pairing::state_now(r, now) as i32,
            })
            .collect();
        Ok(Response::new(ListPairingsResponse { pairings }))
    }
}
