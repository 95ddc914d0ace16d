//! mTLS for tonic, on rustls with the ring provider.
//!
//! Servers accept a handshake with or without a client certificate and hand the
//! certificate to the authorization layer, which decides; that way a bad certificate
//! gets a gRPC UNAUTHENTICATED instead of a bare TLS failure, and the few open RPCs
//! stay reachable without one. The handshake still proves the client holds the key of
//! the certificate it presents.

mod bootstrap;
mod client;
mod live_identity;
mod server;

pub use bootstrap::{fetch_root_ca_unverified, FetchCaError};
pub use client::{
    client_config, client_config_live, connect, connect_from, connect_lazy, ClientTls,
    ServerIdentity,
};
pub use live_identity::LiveIdentity;
pub use server::{handshake, server_config, server_config_live, PeerInfo};

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// `reason` is the whole cause chain ("transport error" alone tells nothing).
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("invalid address {0:?}")]
    Address(String),
}

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// `e` and every error under it, joined with ": ", without repeats (tonic and io
/// errors often print their source in their own message).
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate".into()));
    }
    Ok(certs)
}

pub(crate) fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem(e.to_string()))
}
