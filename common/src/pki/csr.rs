//! Key pairs and CSRs for joiners and owners' devices. The private key is made where
//! it will live and never travels; only the CSR does.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::PkiError;

pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

/// A fresh ECDSA P-256 key and a CSR for it. The CA sets the subject itself; the CN
/// hint only helps a human reading the request, and `role`, if given, asks for that
/// OU so a CA refuses a token that grants another.
pub fn new_key_and_csr(
    subject_hint: &str,
    role: Option<super::Role>,
) -> Result<KeyAndCsr, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject_hint);
    if let Some(role) = role {
        dn.push(DnType::OrganizationalUnitName, role.ou());
    }
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(|e| PkiError::Signing(e.to_string()))?,
    })
}

/// The OUs a CSR's subject asks for (the CA never grants them, but a CSR asking for
/// another role than its token grants is refused outright).
pub fn csr_requested_ous(csr_pem: &str) -> Result<Vec<String>, PkiError> {
    use rustls_pki_types::{pem::PemObject, CertificateSigningRequestDer};
    use x509_parser::{certification_request::X509CertificationRequest, prelude::FromDer};
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
    Ok(super::names::name_fields(&csr.certification_request_info.subject)?.organizational_units)
}
