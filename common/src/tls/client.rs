//! The client half: a tonic `Channel` over rustls that accepts a server only if its
//! certificate is one of this cluster's, for the role the client meant to reach and,
//! where the client knows it, for the exact holder (a raft peer's manager id, the
//! hosted node's id). The check reads the certificate's OU and CN through the same
//! [`PeerVerifier`] the servers use for their callers, never a DNS name alone: DNS
//! names are not what the CA vouches for.

use std::{sync::Arc, time::Duration};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::{provider, LiveIdentity, TlsError};
use crate::pki::{PeerVerifier, Role};

/// Which server a client means to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerIdentity {
    pub role: Role,
    /// The certificate's CN must be this, when set.
    pub id: Option<String>,
}

impl ServerIdentity {
    /// A server of `role` whose certificate names exactly `id`.
    pub fn exact(role: Role, id: impl Into<String>) -> Self {
        ServerIdentity {
            role,
            id: Some(id.into()),
        }
    }
}

impl From<Role> for ServerIdentity {
    fn from(role: Role) -> Self {
        ServerIdentity { role, id: None }
    }
}

impl std::fmt::Display for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{} {id}", self.role),
            None => write!(f, "a {}", self.role),
        }
    }
}

/// A client TLS setup: the cluster to trust and, optionally, our own certificate.
#[derive(Clone)]
pub struct ClientTls {
    verifier: Option<PeerVerifier>,
    /// Read at every handshake, so a renewed certificate serves new connections.
    identity: Option<Arc<LiveIdentity>>,
    /// A finished config (the unverified bootstrap fetch of the root CA).
    fixed: Option<Arc<ClientConfig>>,
}

impl ClientTls {
    pub(crate) fn from_config(config: ClientConfig) -> Self {
        ClientTls {
            verifier: None,
            identity: None,
            fixed: Some(Arc::new(config)),
        }
    }

    /// The rustls config for a connection to `server`.
    fn config_for(&self, server: &ServerIdentity) -> Result<Arc<ClientConfig>, TlsError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let provider = provider();
        let verifier = ClusterServerVerifier {
            peers: self
                .verifier
                .clone()
                .ok_or_else(|| TlsError::Pem("no cluster CA".into()))?,
            expected: server.clone(),
            algorithms: provider.signature_verification_algorithms,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match &self.identity {
            Some(id) => builder.with_client_cert_resolver(id.clone()),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection presents the certificate held now (see the server's
        // config), never one remembered by a resumed session.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// The verifier of servers' certificates; its clones share its trusted roots
    /// (a root rotation changes them through it).
    pub fn verifier(&self) -> Option<&PeerVerifier> {
        self.verifier.as_ref()
    }

    /// The certificate this client presents, if any.
    pub fn identity(&self) -> Option<&Arc<LiveIdentity>> {
        self.identity.as_ref()
    }
}

/// Trust the cluster whose root CA is `ca_pem` (its O names the cluster); present
/// `identity` (certificate PEM, key PEM) if given.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientTls, TlsError> {
    let identity = match identity {
        Some((cert, key)) => Some(LiveIdentity::new(cert, key)?),
        None => None,
    };
    client_config_live(ca_pem, identity)
}

/// Like [`client_config`], presenting whatever `identity` holds at each handshake.
pub fn client_config_live(
    ca_pem: &str,
    identity: Option<Arc<LiveIdentity>>,
) -> Result<ClientTls, TlsError> {
    let cluster_id = crate::pki::subject_of(ca_pem)
        .map_err(|e| TlsError::Pem(e.to_string()))?
        .organizations
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Pem("the root CA names no cluster (O)".into()))?;
    let verifier =
        PeerVerifier::new(ca_pem, &cluster_id).map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok(ClientTls {
        verifier: Some(verifier),
        identity,
        fixed: None,
    })
}

/// Accepts the server's certificate only if the cluster's verifier accepts it and it
/// names the expected role (and holder).
#[derive(Debug)]
struct ClusterServerVerifier {
    peers: PeerVerifier,
    expected: ServerIdentity,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refuse = |why: String| rustls::Error::General(why);
        let intermediates: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        let who = self
            .peers
            .verify_chain(end_entity, &intermediates)
            .map_err(|e| refuse(format!("the server's certificate is not acceptable: {e}")))?;
        if who.role != self.expected.role {
            return Err(refuse(format!(
                "the server is {} {}, not {}",
                who.role, who.id, self.expected
            )));
        }
        if let Some(id) = &self.expected.id {
            if &who.id != id {
                return Err(refuse(format!(
                    "the server is {} {}, not {}",
                    who.role, who.id, self.expected
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn endpoint(addr: &str) -> Result<Endpoint, TlsError> {
    if addr.contains("://") || addr.is_empty() {
        return Err(TlsError::Address(addr.to_string()));
    }
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| TlsError::Address(addr.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

type Connector = tower::util::BoxCloneSyncService<
    http::Uri,
    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    std::io::Error,
>;

fn connector(
    addr: &str,
    config: Arc<ClientConfig>,
    server: &ServerIdentity,
    local: Option<std::net::IpAddr>,
) -> Connector {
    let connector = tokio_rustls::TlsConnector::from(config);
    // The name only fills SNI: the verifier above decides by OU and CN.
    let name = ServerName::try_from(server.role.ou()).expect("role names are DNS names");
    let addr = addr.to_string();
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let name = name.clone();
        let addr = addr.clone();
        async move {
            let tcp = match local {
                None => TcpStream::connect(&addr).await?,
                Some(ip) => {
                    let remote = tokio::net::lookup_host(&addr)
                        .await?
                        .next()
                        .ok_or_else(|| {
                            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                        })?;
                    let socket = if ip.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    socket.bind(std::net::SocketAddr::new(ip, 0))?;
                    socket.connect(remote).await?
                }
            };
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    }))
}

/// Connects now; fails if the server cannot be reached or its certificate is not
/// `server`'s in this cluster.
pub async fn connect(
    addr: &str,
    tls: &ClientTls,
    server: impl Into<ServerIdentity>,
) -> Result<Channel, TlsError> {
    connect_from(None, addr, tls, server).await
}

/// Like [`connect`], from the local address `local` (a multi-homed host choosing
/// its source address).
pub async fn connect_from(
    local: Option<std::net::IpAddr>,
    addr: &str,
    tls: &ClientTls,
    server: impl Into<ServerIdentity>,
) -> Result<Channel, TlsError> {
    let server = server.into();
    endpoint(addr)?
        .connect_with_connector(connector(addr, tls.config_for(&server)?, &server, local))
        .await
        .map_err(|source| TlsError::Connect {
            addr: addr.to_string(),
            reason: super::cause_chain(&source),
        })
}

/// A channel that connects on first use and reconnects as needed.
pub fn connect_lazy(
    addr: &str,
    tls: &ClientTls,
    server: impl Into<ServerIdentity>,
) -> Result<Channel, TlsError> {
    let server = server.into();
    Ok(endpoint(addr)?.connect_with_connector_lazy(connector(
        addr,
        tls.config_for(&server)?,
        &server,
        None,
    )))
}
