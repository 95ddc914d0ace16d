//! The cluster root CA: ECDSA P-256, created once by `lnswarm-manager init`, kept in
//! the replicated store. It signs every leaf certificate; the leaf's subject (CN, OU,
//! O) is always set here, never copied from the request.

use std::{net::IpAddr, time::Duration};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

use super::{identity::ca_digest, pem::pem_to_der, PkiError, Role};

/// What to put in a leaf certificate.
pub struct LeafRequest<'a> {
    /// PEM of the requester's CSR; only its public key is used.
    pub csr_pem: &'a str,
    pub role: Role,
    /// The holder's id: agent or manager id, operator name, `<node id>/<device>`, or
    /// a hosted node's id.
    pub common_name: &'a str,
    /// IP addresses the holder is reached at, as IP SANs. The CA never puts a DNS
    /// name of the caller's choosing in a certificate: the only DNS SAN is the role.
    pub ip_sans: &'a [IpAddr],
    /// Validity; `None` picks the role's default.
    pub validity: Option<(OffsetDateTime, OffsetDateTime)>,
}

pub struct IssuedCertificate {
    pub pem: String,
    pub der: Vec<u8>,
}

pub struct ClusterCa {
    cluster_id: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    /// PEM appended to every issued leaf: during a root rotation, this CA's
    /// certificate cross-signed by the old root.
    chain_pem: String,
}

impl ClusterCa {
    /// A new root CA for a new cluster.
    pub fn create(cluster_id: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "lnswarm root CA");
        dn.push(DnType::OrganizationName, cluster_id);
        let mut params = root_params(dn);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + Duration::from_secs(20 * 365 * 86400);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(sign_err)?;
        Ok(ClusterCa {
            cluster_id: cluster_id.to_string(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            chain_pem: String::new(),
        })
    }

    /// The CA as stored: its certificate and key in PEM.
    pub fn load(cluster_id: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Signing(e.to_string()))?;
        let cert_der = pem_to_der(cert_pem)?;
        Ok(ClusterCa {
            cluster_id: cluster_id.to_string(),
            cert_pem: cert_pem.to_string(),
            cert_der,
            key,
            chain_pem: String::new(),
        })
    }

    /// A root the operator brings (`init --ca-cert`, `cluster ca --rotate
    /// --ca-cert`): a CA certificate whose O is `cluster_id` and whose key is `key_pem`.
    pub fn from_operator(
        cluster_id: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, PkiError> {
        let ca = Self::load(cluster_id, cert_pem, key_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&ca.cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let fields = super::names::name_fields(cert.subject())?;
        if fields.organizations != [cluster_id] {
            return Err(PkiError::WrongCluster);
        }
        if !cert.is_ca() {
            return Err(PkiError::MalformedCertificate(
                "the certificate is not a CA (basic constraints)".into(),
            ));
        }
        if cert.public_key().raw != ca.key.subject_public_key_info().as_slice() {
            return Err(PkiError::MalformedCertificate(
                "the key is not the certificate's".into(),
            ));
        }
        if !cert.validity().is_valid() {
            return Err(PkiError::NotValidNow);
        }
        Ok(ca)
    }

    /// Appends `chain_pem` to every leaf this CA issues.
    pub fn with_chain(mut self, chain_pem: &str) -> Self {
        self.chain_pem = chain_pem.to_string();
        self
    }

    /// `next`'s certificate signed by this CA: same name and key as `next`, so a
    /// holder that trusts only this CA accepts leaves `next` signs when they come
    /// with it.
    pub fn cross_sign(&self, next: &ClusterCa) -> Result<String, PkiError> {
        let (_, next_cert) = x509_parser::parse_x509_certificate(&next.cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let fields = super::names::name_fields(next_cert.subject())?;
        let mut dn = DistinguishedName::new();
        for cn in &fields.common_names {
            dn.push(DnType::CommonName, cn.as_str());
        }
        for o in &fields.organizations {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        let mut params = root_params(dn);
        let (_, own) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let end = own
            .validity()
            .not_after
            .timestamp()
            .min(next_cert.validity().not_after.timestamp());
        params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(3600);
        params.not_after = OffsetDateTime::from_unix_timestamp(end).map_err(sign_err)?;
        params.serial_number = Some(random_serial());
        let issuer =
            Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key).map_err(sign_err)?;
        Ok(params
            .signed_by(&next.key, &issuer)
            .map_err(sign_err)?
            .pem())
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// PEM of the CA's private key, for the replicated store only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Hex SHA-256 of the CA certificate, as join tokens carry it.
    pub fn digest(&self) -> String {
        ca_digest(&self.cert_der)
    }

    /// Signs a leaf certificate for the CSR's public key.
    pub fn issue(&self, req: &LeafRequest<'_>) -> Result<IssuedCertificate, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(req.csr_pem)
            .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
        if req.common_name.is_empty() {
            return Err(PkiError::MissingCommonName);
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.common_name);
        dn.push(DnType::OrganizationalUnitName, req.role.ou());
        dn.push(DnType::OrganizationName, self.cluster_id.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let mut sans = vec![SanType::DnsName(
            req.role.ou().try_into().map_err(sign_err)?,
        )];
        for ip in req.ip_sans {
            let san = SanType::IpAddress(*ip);
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        params.subject_alt_names = sans;
        let (not_before, not_after) = req.validity.unwrap_or_else(|| {
            let days = match req.role {
                Role::Operator | Role::User | Role::Viewer => 365,
                _ => 90,
            };
            validity_for(Duration::from_secs(days * 86400))
        });
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        let issuer =
            Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key).map_err(sign_err)?;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(sign_err)?;
        Ok(IssuedCertificate {
            pem: format!("{}{}", cert.pem(), self.chain_pem),
            der: cert.der().to_vec(),
        })
    }
}

/// A validity of `lifetime` from now, starting a little earlier so that a holder
/// whose clock is slightly behind accepts it: an hour, or a tenth of a short
/// lifetime (renewal is due at a share of the whole span, so the share before
/// issuance must stay small).
pub fn validity_for(lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    let backdate = Duration::from_secs(3600).min(lifetime / 10);
    (now - backdate, now + lifetime)
}

/// The IP address in `addr` (`host:port`, `[v6]:port` or a bare host), if its host
/// is an IP address. Host names give `None`: they never become SANs.
pub fn ip_of_address(addr: &str) -> Option<IpAddr> {
    let addr = addr.trim();
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// A root CA's certificate named `dn` (its validity and serial are the caller's).
fn root_params(dn: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn sign_err(e: impl std::fmt::Display) -> PkiError {
    PkiError::Signing(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{new_key_and_csr, PeerVerifier};

    fn leaf(ca: &ClusterCa) -> Vec<Vec<u8>> {
        let kc = new_key_and_csr("w", Some(Role::Worker)).unwrap();
        let issued = ca
            .issue(&LeafRequest {
                csr_pem: &kc.csr_pem,
                role: Role::Worker,
                common_name: "w",
                ip_sans: &[],
                validity: None,
            })
            .unwrap();
        crate::tls::certs_from_pem(&issued.pem)
            .unwrap()
            .into_iter()
            .map(|c| c.to_vec())
            .collect()
    }

    fn refs(chain: &[Vec<u8>]) -> Vec<&[u8]> {
        chain.iter().map(|c| c.as_slice()).collect()
    }

    fn verifies(v: &PeerVerifier, chain: &[Vec<u8>]) -> Result<(), PkiError> {
        let rest: Vec<&[u8]> = chain[1..].iter().map(|c| c.as_slice()).collect();
        v.verify_chain(&chain[0], &rest).map(|_| ())
    }

    #[test]
    fn a_rotation_is_accepted_by_old_and_new_trust_and_ends_the_old_root() {
        let old = ClusterCa::create("c1").unwrap();
        let next = ClusterCa::create("c1").unwrap();
        let cross = old.cross_sign(&next).unwrap();
        let rotating = ClusterCa::load("c1", next.cert_pem(), &next.key_pem())
            .unwrap()
            .with_chain(&cross);
        let new_leaf = leaf(&rotating);
        assert_eq!(new_leaf.len(), 2, "the leaf carries the cross-signed root");
        let old_leaf = leaf(&old);

        let v = PeerVerifier::new(old.cert_pem(), "c1").unwrap();
        verifies(&v, &new_leaf).expect("trusting the old root, through the cross-signed one");
        assert!(
            verifies(&v, &new_leaf[..1]).is_err(),
            "not without the cross-signed root"
        );
        let generation = v.generation();
        let both = format!("{}{}", old.cert_pem(), next.cert_pem());
        assert!(v.set_roots(&both).unwrap());
        assert!(
            !v.set_roots(&both).unwrap(),
            "the same roots change nothing"
        );
        assert_ne!(v.generation(), generation);
        verifies(&v, &old_leaf).unwrap();
        verifies(&v, &new_leaf[..1]).unwrap();

        // The end of the rotation: connections from the old root are to close.
        assert!(v.require_root(Some(next.cert_pem())).unwrap());
        assert!(v.must_reconnect(&refs(&old_leaf)));
        assert!(!v.must_reconnect(&refs(&new_leaf)));

        v.set_roots(next.cert_pem()).unwrap();
        v.require_root(None).unwrap();
        assert!(matches!(
            verifies(&v, &old_leaf),
            Err(PkiError::UnknownIssuer)
        ));
        verifies(&v, &new_leaf).unwrap();
        assert!(v.must_reconnect(&refs(&old_leaf)));
    }

    #[test]
    fn a_cross_signature_from_another_ca_opens_nothing() {
        let old = ClusterCa::create("c1").unwrap();
        let next = ClusterCa::create("c1").unwrap();
        let stranger = ClusterCa::create("c1").unwrap();
        let forged = ClusterCa::load("c1", next.cert_pem(), &next.key_pem())
            .unwrap()
            .with_chain(&stranger.cross_sign(&next).unwrap());
        let v = PeerVerifier::new(old.cert_pem(), "c1").unwrap();
        assert!(matches!(
            verifies(&v, &leaf(&forged)),
            Err(PkiError::UnknownIssuer)
        ));
    }

    #[test]
    fn an_operators_root_must_name_the_cluster_and_hold_its_key() {
        let a = ClusterCa::create("c1").unwrap();
        let b = ClusterCa::create("c1").unwrap();
        ClusterCa::from_operator("c1", a.cert_pem(), &a.key_pem()).unwrap();
        assert!(matches!(
            ClusterCa::from_operator("c2", a.cert_pem(), &a.key_pem()),
            Err(PkiError::WrongCluster)
        ));
        assert!(ClusterCa::from_operator("c1", a.cert_pem(), &b.key_pem()).is_err());
        assert!(ClusterCa::from_operator("c1", "x", "y").is_err());
    }
}
