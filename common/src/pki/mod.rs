//! The cluster's identity layer: one root CA per cluster, leaf certificates whose OU
//! is the holder's role, and join tokens that pin the CA.

mod ca;
mod csr;
mod envelope;
mod identity;
mod names;
mod pem;
mod role;
mod token;

pub use ca::{ip_of_address, validity_for, ClusterCa, IssuedCertificate, LeafRequest};
pub use csr::{csr_requested_ous, new_key_and_csr, KeyAndCsr};
pub use identity::{
    ca_digest, ip_sans_of, issued_by, issued_by_der, not_after_unix, subject_of, validity_of,
    validity_of_der, Identity, PeerVerifier, Revocations, Subject, NO_REVOCATIONS,
};
pub use names::{directory_string, name_fields, NameFields};
pub use role::Role;
pub use token::JoinToken;

/// Why a certificate, CSR or token was refused. The messages are safe to return to
/// callers: they never include key material or token secrets.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error("malformed certificate signing request: {0}")]
    MalformedCsr(String),
    #[error("certificate is not signed by this cluster's CA")]
    UnknownIssuer,
    #[error("certificate is not valid yet")]
    NotValidNow,
    /// Renewal keeps a live holder's certificate current, so this is a holder that
    /// was away longer than the certificate's lifetime.
    #[error("certificate expired at {at}: a holder renews it before then; one that was away longer must join the cluster again with a join token")]
    Expired { at: String },
    #[error("certificate names another cluster")]
    WrongCluster,
    #[error("certificate must carry exactly one OU, found {0}")]
    OuCount(usize),
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("certificate has no common name")]
    MissingCommonName,
    #[error("certificate was revoked")]
    Revoked,
    #[error("malformed join token")]
    MalformedToken,
    #[error("signing failed: {0}")]
    Signing(String),
}

#[cfg(test)]
#[path = "cert_fuzz.rs"]
pub(crate) mod fuzz;
