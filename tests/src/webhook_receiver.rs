//! An owner's webhook receiver: HTTPS on loopback with a certificate from a CA of
//! its own (handed to the managers with `--webhook-ca-file`), answering each POST
//! with the next status of a script (200 once the script is spent) and keeping
//! every request it was sent.

use std::{
    collections::VecDeque,
    convert::Infallible,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// One POST the receiver was sent.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// The `lnswarm-signature` header.
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<u16>,
    received: Vec<Received>,
}

pub struct WebhookReceiver {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// The CA that signed its certificate, as a PEM file.
    pub ca_file: PathBuf,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Serves on a free loopback port; writes its CA to `dir/webhook-ca.pem`.
    pub async fn start(dir: &Path) -> WebhookReceiver {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_file = dir.join("webhook-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| answer(req, s.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        WebhookReceiver {
            base,
            ca_file,
            shared,
            task,
        }
    }

    /// The next POSTs are answered with `statuses`, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared
            .lock()
            .unwrap()
            .script
            .extend(statuses.iter().copied());
    }

    /// Every POST so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    shared: Arc<Mutex<Shared>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (path, signature, content_type) = (
        req.uri().path().to_string(),
        header("lnswarm-signature"),
        header("content-type"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut s = shared.lock().unwrap();
    let answered = s.script.pop_front().unwrap_or(200);
    s.received.push(Received {
        path,
        signature,
        content_type,
        body,
        answered,
    });
    Ok(Response::builder()
        .status(StatusCode::from_u16(answered).unwrap_or(StatusCode::OK))
        .body(Full::new(Bytes::new()))
        .unwrap())
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
