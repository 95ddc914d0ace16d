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
    ids::{new_id, now_unix_ms},
    pki::{csr_requested_ous, ip_of_address, JoinToken, LeafRequest, PkiError, Role},
};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::{
    cluster,
    store::{keys, Applied, Store, TxnBuilder},
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

/// Largest CSR accepted; a P-256 CSR is well under 1 KiB.
const MAX_CSR_BYTES: usize = 16 * 1024;

/// Signs a leaf for `csr_pem` (CN `id`, OU `role`) without recording it, for callers
/// that record it in the same transaction as other changes.
pub fn sign_leaf(
    store: &Store,
    csr_pem: &str,
    role: Role,
    id: &str,
    ip_sans: &[IpAddr],
) -> Result<CertificateRecord, Status> {
    let (_, record) = cluster::load(store)?;
    let ca = cluster::ca(store, &record)?;
    let issued = ca
        .issue(&LeafRequest {
            csr_pem,
            role,
            common_name: id,
            ip_sans,
            validity: None,
        })
        .map_err(pki_status)?;
    Ok(CertificateRecord {
        id: id.to_string(),
        role: role.ou().to_string(),
        cert_pem: issued.pem,
        revoked: false,
        issued_unix_ms: now_unix_ms(),
    })
}

/// Signs a leaf for `csr_pem` and records it; shared by joins, renewals and init.
/// Returns the certificate PEM.
pub async fn issue_and_record(
    store: &Store,
    csr_pem: &str,
    role: Role,
    id: &str,
    ip_sans: &[IpAddr],
) -> Result<String, Status> {
    let cert = sign_leaf(store, csr_pem, role, id, ip_sans)?;
    let key = keys::certificate(id);
    let txn = match store.get::<CertificateRecord>(&key)? {
        // A renewal replaces the record, unless it was revoked meanwhile.
        Some((version, old)) if !old.revoked => TxnBuilder::new()
            .require_version(&key, version)
            .put(&key, &cert),
        Some(_) => return Err(Status::permission_denied("certificate was revoked")),
        None => TxnBuilder::new().require_absent(&key).put(&key, &cert),
    };
    match store.propose(txn.build()).await? {
        Applied::Committed(_) => Ok(cert.cert_pem),
        Applied::CheckFailed(_) => Err(Status::aborted(
            "certificate record changed concurrently; retry",
        )),
    }
}

/// CSRs are small; anything larger is refused before parsing.
pub fn check_csr(csr: &[u8], allowed_role: Role) -> Result<&str, Status> {
    if csr.len() > MAX_CSR_BYTES {
        return Err(Status::invalid_argument("CSR too large"));
    }
    let csr_pem =
        std::str::from_utf8(csr).map_err(|_| Status::invalid_argument("CSR must be PEM text"))?;
    let requested = csr_requested_ous(csr_pem).map_err(pki_status)?;
    if requested.iter().any(|ou| ou != allowed_role.ou()) {
        return Err(Status::permission_denied(format!(
            "CSR asks for OU {requested:?} but this call grants {allowed_role}"
        )));
    }
    Ok(csr_pem)
}

fn pki_status(e: PkiError) -> Status {
    match e {
        PkiError::MalformedCsr(_) | PkiError::MissingCommonName => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::internal(other.to_string()),
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
            certificate: record.ca_cert_pem.into_bytes(),
        }))
    }

    async fn issue_node_certificate(
        &self,
        req: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let renewing = caller(&req).cloned();
        let req = req.into_inner();
        let (_, record) = cluster::load(&self.store)?;

        let (role, id) = if req.token.is_empty() {
            // Renewal: same id and role as the certificate presented.
            let who = renewing.ok_or_else(|| {
                Status::unauthenticated("a join token or a valid certificate is required")
            })?;
            if !matches!(who.role, Role::Manager | Role::Worker | Role::Operator) {
                return Err(Status::permission_denied(format!(
                    "{} certificates are renewed through the Scheduler",
                    who.role
                )));
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
        let sans: Vec<IpAddr> = ip_of_address(&req.addr).into_iter().collect();
        let cert_pem = issue_and_record(&self.store, csr_pem, role, &id, &sans).await?;
        info!(%id, %role, "issued certificate");
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id: id,
            role: role.ou().to_string(),
            certificate: cert_pem.into_bytes(),
            root_ca: record.ca_cert_pem.into_bytes(),
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
