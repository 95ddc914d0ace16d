//! `lnswarm.v1.CA`: root CA distribution, certificate issuance against join tokens,
//! renewal, and issuance status.

use std::net::IpAddr;

use lnswarm_common::{
    api::{
        ca_server::Ca, CertificateRecord, GetRootCaCertificateRequest,
        GetRootCaCertificateResponse, IssuanceState, IssueNodeCertificateRequest,
        IssueNodeCertificateResponse, NodeCertificateStatusRequest, NodeCertificateStatusResponse,
    },
    authz::caller,
    ids::new_id,
    pki::{ip_of_address, ip_sans_of, JoinToken, PkiError, Role},
    tls::PeerInfo,
};
use tonic::{Request, Response, Status};
use tracing::info;

use super::issue::{check_csr, issue_and_record, IssueError};
use crate::{
    cluster,
    node_state::fence::current_lease,
    store::{keys, Store},
};

pub struct CaService {
    store: Store,
}

impl CaService {
    pub fn new(store: Store) -> Self {
        CaService { store }
    }
}

/// Longest `host:port` accepted (a DNS name is at most 253 bytes).
const MAX_ADDR_BYTES: usize = 261;

impl From<IssueError> for Status {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Pki(PkiError::MalformedCsr(_) | PkiError::MissingCommonName)
            | IssueError::CsrTooLarge
            | IssueError::CsrNotPem => Status::invalid_argument(e.to_string()),
            IssueError::WrongRole { .. } | IssueError::Revoked => {
                Status::permission_denied(e.to_string())
            }
            IssueError::Contended => Status::aborted(e.to_string()),
            IssueError::Cluster(e) => e.into(),
            IssueError::Store(e) => e.into(),
            IssueError::Pki(_) => Status::internal(e.to_string()),
        }
    }
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn get_root_ca_certificate(
        &self,
        _req: Request<GetRootCaCertificateRequest>,
    ) -> Result<Response<GetRootCaCertificateResponse>, Status> {
        let (_, record) = cluster::load(&self.store)?;
        Ok(Response::new(GetRootCaCertificateResponse {
            signing_root: cluster::signing_root(&record).as_bytes().to_vec(),
            trust_bundle: cluster::trust_bundle(&record).into_bytes(),
            certificate: record.ca_cert_pem.into_bytes(),
        }))
    }

    async fn issue_node_certificate(
        &self,
        req: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let renewing = caller(&req).cloned();
        // A renewal keeps the addresses of the certificate it renews.
        let presented_sans = req
            .extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.certificates.first())
            .map(|c| ip_sans_of(c))
            .unwrap_or_default();
        let req = req.into_inner();
        let (_, record) = cluster::load(&self.store)?;

        let (role, id) = if req.token.is_empty() {
            // Renewal: same id and role as the certificate presented.
            let who = renewing.ok_or_else(|| {
                Status::unauthenticated("a join token or a valid certificate is required")
            })?;
            match who.role {
                Role::Manager | Role::Worker | Role::Operator => {}
                // Only the copy that holds the node's lease: a fenced copy's
                // certificate runs out with it.
                Role::Node => {
                    current_lease(&self.store, &who.id, req.lease_epoch)
                        .map_err(|e| Status::failed_precondition(format!("not renewed: {e}")))?;
                }
                _ => {
                    return Err(Status::permission_denied(format!(
                        "{} certificates are renewed through the Scheduler",
                        who.role
                    )))
                }
            }
            (who.role, who.id)
        } else {
            let token = JoinToken::parse(&req.token)
                .map_err(|_| Status::invalid_argument("malformed join token"))?;
            let role = cluster::role_for_token(&record, &token).ok_or_else(|| {
                Status::unauthenticated("join token is not valid for this cluster")
            })?;
            (role, new_id())
        };
        let csr_pem = check_csr(&req.csr, role)?;
        // The address is recorded only as an IP SAN, and only when it is one: the
        // caller never names its certificate (a worker token must not buy a
        // certificate for "swarm-manager" or a wildcard).
        if req.addr.len() > MAX_ADDR_BYTES {
            return Err(Status::invalid_argument("addr is too long for host:port"));
        }
        let sans: Vec<IpAddr> = match ip_of_address(&req.addr) {
            Some(ip) => vec![ip],
            None if req.token.is_empty() => presented_sans,
            None => Vec::new(),
        };
        let cert_pem = issue_and_record(&self.store, csr_pem, role, &id, &sans).await?;
        info!(%id, %role, "issued certificate");
        // Read again: a rotation may have started or finished meanwhile.
        let (_, record) = cluster::load(&self.store)?;
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id: id,
            role: role.ou().to_string(),
            certificate: cert_pem.into_bytes(),
            root_ca: cluster::trust_bundle(&record).into_bytes(),
            cluster_id: record.cluster_id,
        }))
    }

    async fn node_certificate_status(
        &self,
        req: Request<NodeCertificateStatusRequest>,
    ) -> Result<Response<NodeCertificateStatusResponse>, Status> {
        let who = caller(&req)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("certificate required"))?;
        let id = req.into_inner().node_id;
        if who.role != Role::Manager && who.id != id {
            return Err(Status::permission_denied(
                "only managers or the holder may ask about a certificate",
            ));
        }
        let record = self
            .store
            .get::<CertificateRecord>(&keys::certificate(&id))?
            .map(|(_, r)| r)
            .ok_or_else(|| Status::not_found(format!("no certificate issued for {id}")))?;
        let state = if record.revoked {
            IssuanceState::Revoked
        } else {
            IssuanceState::Issued
        };
        Ok(Response::new(NodeCertificateStatusResponse {
            state: state as i32,
            certificate: record.cert_pem.into_bytes(),
        }))
    }
}
