//! Turning a peer's certificate into a typed identity. This is the one place that
//! decides whether a presented certificate is acceptable: it must chain to this
//! cluster's CA, be valid now, name this cluster in O, carry exactly one known OU,
//! and not be revoked.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use super::{
    names::name_fields,
    pem::{pem_to_der, pems_to_ders},
    PkiError, Role,
};

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

/// The roots a verifier trusts now. During a root rotation there are two; the
/// set is replaced whole when the cluster's trust changes, and `generation` moves so
/// that identities verified under an older set are verified again.
struct Roots {
    ders: Vec<Vec<u8>>,
    generation: u64,
    /// At the end of a rotation: the root every connection's client certificate
    /// should come from, so that servers close the others and their clients
    /// reconnect with the certificate they renewed.
    required: Option<Vec<u8>>,
}

/// Verifies peer certificates against one cluster's trusted roots. Clones share
/// the roots: [`PeerVerifier::set_roots`] changes them for every clone at once, so
/// a holder's server and clients follow a root rotation without a restart.
#[derive(Clone)]
pub struct PeerVerifier {
    roots: Arc<RwLock<Arc<Roots>>>,
    /// Counts changes of the roots or the required root, for servers to look at
    /// their open connections again.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
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

/// Most intermediates looked at in a presented chain: the CA sends at most one
/// (the new root cross-signed by the old one, during a rotation).
const MAX_INTERMEDIATES: usize = 2;

impl PeerVerifier {
    /// Trusts every certificate in `ca_pem` (one root, or two during a rotation).
    pub fn new(ca_pem: &str, cluster_id: &str) -> Result<Self, PkiError> {
        Ok(PeerVerifier {
            roots: Arc::new(RwLock::new(Arc::new(Roots {
                ders: pems_to_ders(ca_pem)?,
                generation: 0,
                required: None,
            }))),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
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

    /// The first trusted root's DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.current().ders[0].clone()
    }

    fn current(&self) -> Arc<Roots> {
        self.roots.read().expect("roots lock").clone()
    }

    /// Moves when the trusted roots change.
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// Trusts exactly the certificates in `ca_pem` from now on, in this verifier
    /// and all its clones. Returns whether that changed anything; a bundle that
    /// does not parse changes nothing.
    pub fn set_roots(&self, ca_pem: &str) -> Result<bool, PkiError> {
        let ders = pems_to_ders(ca_pem)?;
        {
            let mut roots = self.roots.write().expect("roots lock");
            if roots.ders == ders {
                return Ok(false);
            }
            let generation = roots.generation + 1;
            *roots = Arc::new(Roots {
                ders,
                generation,
                required: roots.required.clone(),
            });
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Asks servers to close connections whose client certificate is not from
    /// `root_pem` (`None`: no such demand). Their clients reconnect with the
    /// certificate they hold now, before the roots they came from are dropped.
    pub fn require_root(&self, root_pem: Option<&str>) -> Result<bool, PkiError> {
        let required = root_pem.map(pem_to_der).transpose()?;
        {
            let mut roots = self.roots.write().expect("roots lock");
            if roots.required == required {
                return Ok(false);
            }
            *roots = Arc::new(Roots {
                ders: roots.ders.clone(),
                generation: roots.generation,
                required,
            });
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Moves whenever the roots or the required root change.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether a connection whose client presented `chain` (leaf first) should be
    /// closed: its certificate no longer verifies, or is not from the required
    /// root.
    pub fn must_reconnect(&self, chain: &[&[u8]]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        let roots = self.current();
        match &roots.required {
            Some(root) => !signed_by_der(leaf, root),
            None => self.verify_chain(leaf, intermediates).is_err(),
        }
    }

    /// Whether `who` was revoked since its certificate was verified.
    pub fn is_revoked(&self, who: &Identity) -> bool {
        self.revocations.is_revoked(who.role, &who.id)
    }

    /// The identity a DER certificate proves, or why it proves none.
    pub fn verify(&self, cert_der: &[u8]) -> Result<Identity, PkiError> {
        self.verify_chain(cert_der, &[])
    }

    /// The identity a leaf proves, signed by a trusted root or by an intermediate
    /// in `intermediates` that a trusted root signed (during a rotation the CA
    /// sends the new root cross-signed by the old one, so holders that trust only
    /// the old root accept leaves from the new one).
    pub fn verify_chain(
        &self,
        cert_der: &[u8],
        intermediates: &[&[u8]],
    ) -> Result<Identity, PkiError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        // Only the encoding the CA issues: what is around the signed part (bytes
        // after the certificate included) is not signed, and the parser is lenient
        // about it (found by fuzzing, pki/cert_fuzz.rs).
        super::envelope::check(cert_der, cert.tbs_certificate.as_ref())?;
        let roots = self.current();
        let mut signers = Vec::new();
        for der in &roots.ders {
            let (_, root) = X509Certificate::from_der(der)
                .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
            signers.push(root);
        }
        let by_root = signers.iter().any(|ca| {
            cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
        });
        // A cross-signed root is matched by its key alone: an operator's root may
        // encode its name differently from the copy the CA signs.
        let signed = by_root
            || intermediates
                .iter()
                .take(MAX_INTERMEDIATES)
                .filter_map(|der| cross_signed(der, &signers))
                .any(|ca| cert.verify_signature(Some(ca.public_key())).is_ok());
        if !signed {
            return Err(PkiError::UnknownIssuer);
        }
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

/// An intermediate a trusted root signed, that is a CA and valid now; `None`
/// otherwise (an unusable intermediate is ignored, so the leaf must verify some
/// other way).
fn cross_signed<'a>(der: &'a [u8], roots: &[X509Certificate<'_>]) -> Option<X509Certificate<'a>> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    super::envelope::check(der, c.tbs_certificate.as_ref()).ok()?;
    if !c.is_ca() || !c.validity().is_valid() {
        return None;
    }
    roots
        .iter()
        .any(|r| c.issuer() == r.subject() && c.verify_signature(Some(r.public_key())).is_ok())
        .then_some(c)
}

/// Whether the first certificate in `cert_pem` is signed by the root `root_pem`
/// (unverified otherwise): which root a holder's certificate comes from.
pub fn issued_by(cert_pem: &str, root_pem: &str) -> bool {
    pem_to_der(cert_pem).is_ok_and(|der| issued_by_der(&der, root_pem))
}

/// [`issued_by`] for a DER certificate.
pub fn issued_by_der(cert_der: &[u8], root_pem: &str) -> bool {
    pem_to_der(root_pem).is_ok_and(|root| signed_by_der(cert_der, &root))
}

fn signed_by_der(cert_der: &[u8], root_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, root))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(root_der),
    ) else {
        return false;
    };
    cert.issuer() == root.subject() && cert.verify_signature(Some(root.public_key())).is_ok()
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
