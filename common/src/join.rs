//! Joining a cluster with a token, shared by `lnswarm-agent join` and
//! `lnswarm-manager join`: fetch the root CA, pin it by the token's digest (refusing
//! before the token's secret is sent if it does not match), make a key locally, and
//! trade a CSR plus the token for a certificate. The key never leaves this host.

use crate::{
    api::{ca_client::CaClient, IssueNodeCertificateRequest},
    credentials::Credentials,
    pki::{ca_digest, new_key_and_csr, JoinToken, PkiError, Role},
    tls::{self, FetchCaError, TlsError},
};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("malformed join token")]
    MalformedToken,
    #[error("could not fetch the root CA from {addr}: {source}")]
    FetchCa {
        addr: String,
        #[source]
        source: FetchCaError,
    },
    #[error("the manager's root CA (digest {actual}) is not the one expected (digest {expected}); refusing to send anything secret to it. If the cluster's root CA was rotated, this join token is no longer valid: get the current one with `lnswarmctl cluster join-token`")]
    CaMismatch { expected: String, actual: String },
    #[error("manager refused the join: {0}")]
    Refused(tonic::Status),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Fetches the root CA from a manager and returns it only if its SHA-256 digest is
/// `expected_digest` (as join tokens and `lnswarmctl cluster info` show it).
pub async fn fetch_pinned_ca(
    manager_addr: &str,
    expected_digest: &str,
) -> Result<String, JoinError> {
    let ca_pem = tls::fetch_root_ca_unverified(manager_addr)
        .await
        .map_err(|source| JoinError::FetchCa {
            addr: manager_addr.to_string(),
            source,
        })?;
    let ca_der = tls::certs_from_pem(&ca_pem)?
        .into_iter()
        .next()
        .expect("certs_from_pem returns at least one");
    let actual = ca_digest(&ca_der);
    if !actual.eq_ignore_ascii_case(expected_digest.trim()) {
        return Err(JoinError::CaMismatch {
            expected: expected_digest.to_string(),
            actual,
        });
    }
    Ok(ca_pem)
}

/// What a successful join yields.
pub struct Joined {
    pub id: String,
    pub cluster_id: String,
    pub credentials: Credentials,
}

/// Joins through the manager at `manager_addr` as `role`; `advertise_addr` is where
/// this host will be reachable (recorded in the certificate's SANs).
pub async fn join(
    manager_addr: &str,
    token: &str,
    role: Role,
    advertise_addr: &str,
) -> Result<Joined, JoinError> {
    let token = JoinToken::parse(token).map_err(|_| JoinError::MalformedToken)?;
    let ca_pem = fetch_pinned_ca(manager_addr, &token.ca_digest).await?;
    let key = new_key_and_csr(role.ou(), Some(role))?;
    let channel = tls::connect(
        manager_addr,
        &tls::client_config(&ca_pem, None)?,
        Role::Manager,
    )
    .await?;
    let issued = CaClient::new(channel)
        .issue_node_certificate(IssueNodeCertificateRequest {
            csr: key.csr_pem.into_bytes(),
            token: token.to_string(),
            addr: advertise_addr.to_string(),
            lease_epoch: 0,
        })
        .await
        .map_err(JoinError::Refused)?
        .into_inner();
    Ok(Joined {
        id: issued.node_id,
        cluster_id: issued.cluster_id,
        credentials: Credentials {
            cert_pem: String::from_utf8_lossy(&issued.certificate).into_owned(),
            key_pem: key.key_pem,
            ca_pem,
        },
    })
}
