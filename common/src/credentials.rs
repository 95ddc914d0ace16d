//! A holder's TLS credentials on disk: `cert.pem`, `key.pem` and `ca.pem` in one
//! directory, written with mode 0600 (directory 0700) so only the holder reads them.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use crate::{
    cert_files,
    pki::{subject_of, PeerVerifier, PkiError},
    tls::{client_config, ClientTls, TlsError},
};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading credentials from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing credentials to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

#[derive(Clone)]
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Reads the three files, finishing a renewal a crash interrupted.
    pub fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let rerr = |name: &str| {
            let path = dir.join(name);
            move |source| CredentialsError::Read { path, source }
        };
        let (cert_pem, key_pem) =
            cert_files::read_pair(&dir.join("cert.pem"), &dir.join("key.pem"))
                .map_err(rerr("cert.pem"))?;
        let ca_pem = fs::read_to_string(dir.join("ca.pem")).map_err(rerr("ca.pem"))?;
        Ok(Credentials {
            cert_pem,
            key_pem,
            ca_pem,
        })
    }

    /// Whether `dir` holds credentials.
    pub fn exist(dir: &Path) -> bool {
        dir.join("cert.pem").exists() && dir.join("key.pem").exists()
    }

    /// Writes all three files: the CA first (so a certificate is never next to a
    /// CA that does not trust it), then the certificate and key as a pair.
    pub fn save(&self, dir: &Path) -> Result<(), CredentialsError> {
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CredentialsError::Write { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(werr(dir))?;
        let ca = dir.join("ca.pem");
        cert_files::write_private(&ca, self.ca_pem.as_bytes()).map_err(werr(&ca))?;
        cert_files::write_pair(
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
            &self.cert_pem,
            &self.key_pem,
        )
        .map_err(werr(dir))
    }

    /// Client TLS presenting these credentials.
    pub fn client_tls(&self) -> Result<ClientTls, TlsError> {
        client_config(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)))
    }

    /// The cluster id: the O of the CA certificate.
    pub fn cluster_id(&self) -> Result<String, PkiError> {
        subject_of(&self.ca_pem)?
            .organizations
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::MalformedCertificate("CA names no cluster (O)".into()))
    }

    /// The holder's id: the CN of its certificate.
    pub fn id(&self) -> Result<String, PkiError> {
        subject_of(&self.cert_pem)?
            .common_name
            .ok_or(PkiError::MissingCommonName)
    }

    /// A verifier for peers of this holder's cluster.
    pub fn peer_verifier(&self) -> Result<PeerVerifier, PkiError> {
        PeerVerifier::new(&self.ca_pem, &self.cluster_id()?)
    }
}
