//! Turning a peer's certificate into a typed identity. This is the one place that
//! decides whether a presented certificate is acceptable: it must chain to this
//! cluster's CA, be valid now, name this cluster in O, carry exactly one known OU,
//! and not be revoked.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use super::{names::name_fields, pem::pem_to_der, PkiError, Role};

/// Hex SHA-256 of a certificate's DER: the CA digest that join tokens carry.
pub fn ca_digest(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The subject fields lnswarm uses, read from a PEM certificate (unverified).
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub common_name: Option<String>,
    pub organizational_units: Vec<String>,
    pub organizations: Vec<String>,
}

pub fn subject_of(pem: &str) -> Result<Subject, PkiError> {
    let der = pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    let fields = name_fields(cert.subject())?;
    Ok(Subject {
        common_name: fields.common_names.into_iter().next(),
        organizational_units: fields.organizational_units,
        organizations: fields.organizations,
    })
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    /// The certificate's CN.
    pub id: String,
    pub cluster_id: String,
    /// For `lightning-user` and `lightning-node` certificates: the node id they bind.
    pub node_id: Option<String>,
    /// For `lightning-user` certificates: the device name.
    pub device: Option<String>,
}

impl Identity {
    /// `role/id`, for logs and audit.
    pub fn label(&self) -> String {
        format!("{}/{}", self.role, self.id)
    }
}

/// Ids whose certificates are refused although they verify: removed managers and
/// agents. The manager backs this with its store.
pub trait Revocations: Send + Sync + 'static {
    fn is_revoked(&self, role: Role, id: &str) -> bool;
}

struct NoRevocations;

impl Revocations for NoRevocations {
    fn is_revoked(&self, _: Role, _: &str) -> bool {
        false
    }
}

/// For verifiers outside the managers (agents, hosted nodes), which have no store.
pub static NO_REVOCATIONS: &dyn Revocations = &NoRevocations;

/// Verifies peer certificates against one cluster's CA.
#[derive(Clone)]
pub struct PeerVerifier {
    ca_der: Arc<Vec<u8>>,
    cluster_id: String,
    revocations: Arc<dyn Revocations>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    pub fn new(ca_pem: &str, cluster_id: &str) -> Result<Self, PkiError> {
        Ok(PeerVerifier {
            ca_der: Arc::new(pem_to_der(ca_pem)?),
            cluster_id: cluster_id.to_string(),
            revocations: Arc::new(NoRevocations),
        })
    }

    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = revocations;
        self
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Whether `who` was revoked since its certificate was verified.
    pub fn is_revoked(&self, who: &Identity) -> bool {
        self.revocations.is_revoked(who.role, &who.id)
    }

    /// The identity a DER certificate proves, or why it proves none.
    pub fn verify(&self, cert_der: &[u8]) -> Result<Identity, PkiError> {
        let (_, ca) = X509Certificate::from_der(&self.ca_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        // Only the encoding the CA issues: what is around the signed part (bytes
        // after the certificate included) is not signed, and the parser is lenient
        // about it (found by fuzzing, pki/cert_fuzz.rs).
        super::envelope::check(cert_der, cert.tbs_certificate.as_ref())?;
        if cert.issuer() != ca.subject() {
            return Err(PkiError::UnknownIssuer);
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| PkiError::UnknownIssuer)?;
        let validity = cert.validity();
        if !validity.is_valid() {
            let now = x509_parser::time::ASN1Time::now();
            return Err(if now > validity.not_after {
                PkiError::Expired {
                    at: validity.not_after.to_string(),
                }
            } else {
                PkiError::NotValidNow
            });
        }
        let fields = name_fields(cert.subject())?;
        if fields.organizations != [self.cluster_id.as_str()] {
            return Err(PkiError::WrongCluster);
        }
        if fields.organizational_units.len() != 1 {
            return Err(PkiError::OuCount(fields.organizational_units.len()));
        }
        let role: Role = fields.organizational_units[0].parse()?;
        let id = match fields.common_names.as_slice() {
            [cn] if !cn.is_empty() => cn.clone(),
            [] | [_] => return Err(PkiError::MissingCommonName),
            _ => {
                return Err(PkiError::MalformedCertificate(
                    "certificate carries more than one CN".into(),
                ))
            }
        };
        if self.revocations.is_revoked(role, &id) {
            return Err(PkiError::Revoked);
        }
        let (node_id, device) = match role {
            Role::User | Role::Viewer => match id.split_once('/') {
                Some((node, device)) if crate::ids::is_node_id_hex(node) && !device.is_empty() => {
                    (Some(node.to_string()), Some(device.to_string()))
                }
                _ => {
                    return Err(PkiError::MalformedCertificate(
                        "owner CN must be <node id>/<device>".into(),
                    ))
                }
            },
            Role::Node => (Some(id.clone()), None),
            _ => (None, None),
        };
        Ok(Identity {
            role,
            id,
            cluster_id: self.cluster_id.clone(),
            node_id,
            device,
        })
    }
}

/// When a certificate (PEM, leaf first) starts and stops being valid, in Unix
/// seconds (unverified).
pub fn validity_of(pem: &str) -> Result<(i64, i64), PkiError> {
    validity_of_der(&pem_to_der(pem)?)
        .ok_or_else(|| PkiError::MalformedCertificate("unreadable validity".into()))
}

/// [`validity_of`] for a DER certificate.
pub fn validity_of_der(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The IP addresses a certificate names (unverified): what a renewal keeps.
pub fn ip_sans_of(cert_der: &[u8]) -> Vec<std::net::IpAddr> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// When a certificate stops being valid, in Unix seconds (unverified).
pub fn not_after_unix(cert_der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(cert.validity().not_after.timestamp())
}
