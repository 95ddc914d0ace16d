//! A root CA the test owns. `lnswarm-manager init --ca-cert --ca-key` accepts an
//! operator's own root CA, so a test can start a real cluster on a CA whose key it
//! holds and mint any certificate a user might present: each role, an owner of a
//! given node, an expired one, one with two OUs, one naming another cluster, or one
//! from a foreign CA.

use std::{path::Path, time::Duration};

use lnswarm_common::{
    credentials::Credentials,
    pki::{new_key_and_csr, ClusterCa, LeafRequest, Role},
};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, Issuer,
    KeyPair, SanType,
};

pub struct TestCa {
    pub ca: ClusterCa,
}

impl TestCa {
    pub fn new(cluster_id: &str) -> Self {
        TestCa {
            ca: ClusterCa::create(cluster_id).expect("create test CA"),
        }
    }

    pub fn cluster_id(&self) -> &str {
        self.ca.cluster_id()
    }

    /// Writes `ca.crt` and `ca.key` into `dir` for `lnswarm-manager init`.
    pub fn write(&self, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = dir.join("ca.crt");
        let key = dir.join("ca.key");
        std::fs::write(&cert, self.ca.cert_pem()).unwrap();
        std::fs::write(&key, self.ca.key_pem()).unwrap();
        (cert, key)
    }

    /// A credential for `role` with CN `cn`, valid now.
    pub fn mint(&self, role: Role, cn: &str) -> Credentials {
        self.mint_with_validity(role, cn, None)
    }

    /// A credential whose validity ended yesterday.
    pub fn mint_expired(&self, role: Role, cn: &str) -> Credentials {
        let now = time::OffsetDateTime::now_utc();
        self.mint_with_validity(
            role,
            cn,
            Some((
                now - Duration::from_secs(10 * 86400),
                now - Duration::from_secs(86400),
            )),
        )
    }

    fn mint_with_validity(
        &self,
        role: Role,
        cn: &str,
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> Credentials {
        let key = new_key_and_csr(cn, None).unwrap();
        let cert = self
            .ca
            .issue(&LeafRequest {
                csr_pem: &key.csr_pem,
                role,
                common_name: cn,
                ip_sans: &[],
                validity,
            })
            .unwrap();
        Credentials {
            cert_pem: cert.pem,
            key_pem: key.key_pem,
            ca_pem: self.ca.cert_pem().to_string(),
        }
    }

    /// A credential signed by this CA with an arbitrary subject: `ous` as given and
    /// `org` as the O. Used for certificates the cluster's CA would never issue.
    pub fn mint_raw(&self, cn: &str, ous: &[&str], org: &str) -> Credentials {
        let ous: Vec<DnValue> = ous.iter().map(|o| DnValue::from(*o)).collect();
        self.mint_raw_values(cn, &ous, org)
    }

    /// Like [`Self::mint_raw`], with each OU in the string type given.
    pub fn mint_raw_values(&self, cn: &str, ous: &[DnValue], org: &str) -> Credentials {
        let ca_key = KeyPair::from_pem(&self.ca.key_pem()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(self.ca.cert_pem(), ca_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for (i, ou) in ous.iter().enumerate() {
            // rcgen keeps one value per attribute type; a custom type with the OU's
            // OID adds a second OU attribute.
            let ty = if i == 0 {
                DnType::OrganizationalUnitName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 11])
            };
            dn.push(ty, ou.clone());
        }
        dn.push(DnType::OrganizationName, org);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.subject_alt_names = vec![SanType::DnsName("lnswarm-operator".try_into().unwrap())];
        let cert = params.signed_by(&key, &issuer).unwrap();
        Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.ca.cert_pem().to_string(),
        }
    }
}

/// A syntactically valid Lightning node id (compressed secp256k1 point prefix and 32
/// bytes), distinct per `n`.
pub fn fake_node_id(n: u8) -> String {
    format!("02{}", hex::encode([n; 32]))
}
