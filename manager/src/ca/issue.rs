//! Signing leaf certificates: checking a CSR, signing it under the cluster CA, and
//! recording what was issued (the record backs revocation). Shared by the CA
//! service, registration, the orchestrator (node certificates) and init; its errors
//! become gRPC codes only in the services.

use std::{net::IpAddr, time::Duration};

use lnswarm_common::{
    api::CertificateRecord,
    ids::now_unix_ms,
    pki::{csr_requested_ous, validity_for, LeafRequest, PkiError, Role},
};

use crate::{
    cluster::{self, ClusterError},
    store::{keys, Applied, Store, StoreError, TxnBuilder},
};

/// Largest CSR accepted; a P-256 CSR is well under 1 KiB.
const MAX_CSR_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("CSR too large")]
    CsrTooLarge,
    #[error("CSR must be PEM text")]
    CsrNotPem,
    #[error("CSR asks for OU {requested:?} but this call grants {allowed}")]
    WrongRole {
        requested: Vec<String>,
        allowed: Role,
    },
    #[error("certificate was revoked")]
    Revoked,
    #[error("certificate record changed concurrently; retry")]
    Contended,
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs a leaf for `csr_pem` (CN `id`, OU `role`) without recording it, for callers
/// that record it in the same transaction as other changes.
pub fn sign_leaf(
    store: &Store,
    csr_pem: &str,
    role: Role,
    id: &str,
    ip_sans: &[IpAddr],
) -> Result<CertificateRecord, IssueError> {
    let (_, record) = cluster::load(store)?;
    let ca = cluster::signing_ca(store, &record)?;
    let settings = cluster::effective_settings(&record);
    // Holders that renew themselves get the cluster's lifetime; owners' devices
    // and apps, which are issued a certificate and keep it, get theirs.
    let lifetime = match role {
        Role::User | Role::Viewer | Role::App => settings.device_cert_expiry_secs,
        Role::Manager | Role::Worker | Role::Operator | Role::Node => settings.cert_expiry_secs,
    };
    let issued = ca.issue(&LeafRequest {
        csr_pem,
        role,
        common_name: id,
        ip_sans,
        validity: Some(validity_for(Duration::from_secs(lifetime))),
    })?;
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
) -> Result<String, IssueError> {
    let cert = sign_leaf(store, csr_pem, role, id, ip_sans)?;
    let key = keys::certificate(id);
    let txn = match store.get::<CertificateRecord>(&key)? {
        // A renewal replaces the record, unless it was revoked meanwhile.
        Some((version, old)) if !old.revoked => TxnBuilder::new()
            .require_version(&key, version)
            .put(&key, &cert),
        Some(_) => return Err(IssueError::Revoked),
        None => TxnBuilder::new().require_absent(&key).put(&key, &cert),
    };
    match store.propose(txn.build()).await? {
        Applied::Committed(_) => Ok(cert.cert_pem),
        Applied::CheckFailed(_) => Err(IssueError::Contended),
    }
}

/// CSRs are small; anything larger is refused before parsing.
pub fn check_csr(csr: &[u8], allowed_role: Role) -> Result<&str, IssueError> {
    if csr.len() > MAX_CSR_BYTES {
        return Err(IssueError::CsrTooLarge);
    }
    let csr_pem = std::str::from_utf8(csr).map_err(|_| IssueError::CsrNotPem)?;
    let requested = csr_requested_ous(csr_pem)?;
    if requested.iter().any(|ou| ou != allowed_role.ou()) {
        return Err(IssueError::WrongRole {
            requested,
            allowed: allowed_role,
        });
    }
    Ok(csr_pem)
}
