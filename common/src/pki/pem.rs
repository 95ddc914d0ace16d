//! PEM to DER, for the CA and the verifier alike (its own module so that neither
//! depends on the other for it).

use super::PkiError;

/// The DER of the first certificate in a PEM string.
pub(crate) fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))
}
