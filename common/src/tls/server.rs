//! The server half: a rustls config that asks for (but does not require) a client
//! certificate, and the handshake that captures the peer's certificate for the
//! authorization layer.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustls::{
    client::danger::HandshakeSignatureValid,
    crypto::WebPkiSupportedAlgorithms,
    server::danger::{ClientCertVerified, ClientCertVerifier},
    DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::TcpStream;

use super::{provider, LiveIdentity, TlsError};
use crate::pki::Identity;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection tells the authorization layer about its peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The peer's certificate chain, leaf first; empty when it sent none.
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
    /// The leaf's verified identity, expiry (Unix seconds) and the generation of
    /// the roots it was verified under, once the authorization layer has verified
    /// it: a connection's certificate never changes, so later calls on it only
    /// check expiry, revocation and that the trusted roots are the same.
    pub verified: Arc<OnceLock<(Arc<Identity>, i64, u64)>>,
}

/// Proves possession of the presented certificate's key, and defers the question of
/// whether the certificate is acceptable to the authorization layer.
#[derive(Debug)]
struct DeferredClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A server config presenting `cert_pem` (leaf first) with `key_pem`.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_live(LiveIdentity::new(cert_pem, key_pem)?)
}

/// A server config presenting whatever `identity` holds at each handshake.
pub fn server_config_live(identity: Arc<LiveIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = DeferredClientCert {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption: a resumed session carries the client certificate of
    // the session it resumes, so a client reconnecting with a renewed certificate
    // would still be seen with the old one (and refused once it expires).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Completes the TLS handshake on an accepted connection within
/// [`HANDSHAKE_TIMEOUT`], returning the stream and what it proved about the peer;
/// `None` (logged at debug) when the peer failed or stalled.
pub async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    remote_addr: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, PeerInfo)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let certificates = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let info = PeerInfo {
                remote_addr,
                certificates: Arc::new(certificates),
                verified: Arc::default(),
            };
            Some((stream, info))
        }
        Ok(Err(e)) => {
            tracing::debug!(%remote_addr, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote_addr, "TLS handshake timed out");
            None
        }
    }
}
