//! The one connection made without trusting the server: a joiner fetching the root
//! CA. Nothing secret is sent on it; the caller checks the returned CA against the
//! digest in its join token before it sends the token on a verified connection.

use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{client::ClientTls, provider, TlsError};
use crate::{api::ca_client::CaClient, api::GetRootCaCertificateRequest, pki::Role};

#[derive(Debug)]
struct TrustOnFirstFetch {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for TrustOnFirstFetch {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

/// Error fetching the root CA.
#[derive(Debug, thiserror::Error)]
pub enum FetchCaError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("manager refused: {0}")]
    Status(#[from] tonic::Status),
    #[error("manager returned a CA that is not valid UTF-8 PEM")]
    NotPem,
}

/// Fetches the root CA PEM from a manager without verifying the manager.
pub async fn fetch_root_ca_unverified(addr: &str) -> Result<String, FetchCaError> {
    let provider = provider();
    let verifier = TrustOnFirstFetch {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel = super::connect(addr, &ClientTls::from_config(config), Role::Manager).await?;
    let response = CaClient::new(channel)
        .get_root_ca_certificate(GetRootCaCertificateRequest {})
        .await?;
    String::from_utf8(response.into_inner().certificate).map_err(|_| FetchCaError::NotPem)
}
