//! The client half: a tonic `Channel` over rustls that trusts only the cluster CA and
//! expects the server to hold a certificate for a given role (the role's name is a
//! DNS SAN of every certificate the CA issues for it).

use std::{sync::Arc, time::Duration};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::{certs_from_pem, key_from_pem, provider, roots_from_pem, TlsError};
use crate::pki::Role;

/// A client TLS setup: the CA to trust and, optionally, our own certificate.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl ClientTls {
    pub(crate) fn from_config(config: ClientConfig) -> Self {
        ClientTls {
            config: Arc::new(config),
        }
    }
}

/// Trust `ca_pem`; present `identity` (certificate PEM, key PEM) if given.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientTls, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots_from_pem(ca_pem)?);
    let mut config = match identity {
        Some((cert, key)) => {
            builder.with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ClientTls::from_config(config))
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

fn connector(addr: &str, tls: &ClientTls, server_role: Role) -> Connector {
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let name = ServerName::try_from(server_role.ou()).expect("role names are DNS names");
    let addr = addr.to_string();
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let name = name.clone();
        let addr = addr.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    }))
}

/// Connects now; fails if the server cannot be reached or its certificate is not a
/// `server_role` certificate of this cluster.
pub async fn connect(addr: &str, tls: &ClientTls, server_role: Role) -> Result<Channel, TlsError> {
    endpoint(addr)?
        .connect_with_connector(connector(addr, tls, server_role))
        .await
        .map_err(|source| TlsError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// A channel that connects on first use and reconnects as needed.
pub fn connect_lazy(addr: &str, tls: &ClientTls, server_role: Role) -> Result<Channel, TlsError> {
    Ok(endpoint(addr)?.connect_with_connector_lazy(connector(addr, tls, server_role)))
}
