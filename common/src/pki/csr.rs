//! Key pairs and CSRs for joiners and owners' devices. The private key is made where
//! it will live and never travels; only the CSR does.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::PkiError;

pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

/// A fresh ECDSA P-256 key and a CSR for it. The CA ignores the CSR's subject; the
/// hint only helps a human reading the request.
pub fn new_key_and_csr(subject_hint: &str) -> Result<KeyAndCsr, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject_hint);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(|e| PkiError::Signing(e.to_string()))?,
    })
}
