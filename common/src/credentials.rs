//! A holder's TLS credentials on disk: `cert.pem`, `key.pem` and `ca.pem` in one
//! directory, written with mode 0600 (directory 0700) so only the holder reads them.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::{
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
    pub fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| CredentialsError::Read { path, source })
        };
        Ok(Credentials {
            cert_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
            ca_pem: read("ca.pem")?,
        })
    }

    /// Whether `dir` holds credentials.
    pub fn exist(dir: &Path) -> bool {
        dir.join("cert.pem").exists() && dir.join("key.pem").exists()
    }

    /// Writes all three files, each replaced atomically, key first.
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
        for (name, body) in [
            ("key.pem", &self.key_pem),
            ("cert.pem", &self.cert_pem),
            ("ca.pem", &self.ca_pem),
        ] {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(werr(&tmp))?;
            f.write_all(body.as_bytes()).map_err(werr(&tmp))?;
            f.sync_all().map_err(werr(&tmp))?;
            fs::rename(&tmp, &path).map_err(werr(&path))?;
        }
        Ok(())
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
