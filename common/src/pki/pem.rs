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

/// The DER of every certificate in a PEM bundle; at least one.
pub(crate) fn pems_to_ders(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    if ders.is_empty() {
        return Err(PkiError::MalformedCertificate("no certificate".into()));
    }
    Ok(ders)
}
