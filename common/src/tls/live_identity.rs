//! A holder's certificate and key as its TLS configs see them: one value that both
//! its server and its clients read at every handshake, so that a renewed
//! certificate is used by every new connection from the moment it is written,
//! while connections already open carry on (TLS checks a certificate only at the
//! handshake).

use std::sync::{Arc, RwLock};

use rustls::{
    client::ResolvesClientCert,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    SignatureScheme,
};

use super::{certs_from_pem, key_from_pem, provider, TlsError};

/// The current certificate (leaf first) and key, swapped whole on renewal.
pub struct LiveIdentity {
    current: RwLock<Current>,
}

struct Current {
    key: Arc<CertifiedKey>,
    cert_pem: String,
}

impl std::fmt::Debug for LiveIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIdentity").finish_non_exhaustive()
    }
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = CertifiedKey::from_der(
        certs_from_pem(cert_pem)?,
        key_from_pem(key_pem)?,
        &provider(),
    )?;
    Ok(Arc::new(key))
}

impl LiveIdentity {
    /// Fails when the PEM does not parse or the key is not the certificate's.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(LiveIdentity {
            current: RwLock::new(Current {
                key: certified(cert_pem, key_pem)?,
                cert_pem: cert_pem.to_string(),
            }),
        }))
    }

    /// Uses `cert_pem` and `key_pem` for every handshake from now on. Checked
    /// first: a pair that does not match leaves the current one in place.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let key = certified(cert_pem, key_pem)?;
        let mut current = self.current.write().expect("identity lock");
        *current = Current {
            key,
            cert_pem: cert_pem.to_string(),
        };
        Ok(())
    }

    /// PEM of the certificate in use.
    pub fn cert_pem(&self) -> String {
        self.current.read().expect("identity lock").cert_pem.clone()
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("identity lock").key.clone()
    }
}

impl ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

impl ResolvesClientCert for LiveIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClusterCa, LeafRequest, Role};

    fn leaf(ca: &ClusterCa, cn: &str) -> (String, String) {
        let kc = crate::pki::new_key_and_csr(cn, None).unwrap();
        let cert = ca
            .issue(&LeafRequest {
                csr_pem: &kc.csr_pem,
                role: Role::Worker,
                common_name: cn,
                ip_sans: &[],
                validity: None,
            })
            .unwrap();
        (cert.pem, kc.key_pem)
    }

    #[test]
    fn replace_swaps_the_certificate_and_refuses_a_mismatched_key() {
        let ca = ClusterCa::create("c1").unwrap();
        let (cert_a, key_a) = leaf(&ca, "a");
        let (cert_b, key_b) = leaf(&ca, "b");
        let id = LiveIdentity::new(&cert_a, &key_a).unwrap();
        assert!(id.replace(&cert_b, &key_a).is_err(), "key of another cert");
        assert_eq!(id.cert_pem(), cert_a, "a refused pair changes nothing");
        id.replace(&cert_b, &key_b).unwrap();
        assert_eq!(id.cert_pem(), cert_b);
        let served = ResolvesClientCert::resolve(&*id, &[], &[]).unwrap();
        assert_eq!(
            served.cert[0].as_ref(),
            certs_from_pem(&cert_b).unwrap()[0].as_ref()
        );
    }
}
