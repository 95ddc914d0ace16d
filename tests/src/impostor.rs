//! A server that presents a certificate of the test's choosing: a valid cluster
//! certificate of the wrong role, or of the wrong holder. It counts the TLS
//! handshakes that complete: a client that refuses the certificate aborts the
//! handshake, so a count of zero is what "refused" looks like from the server.
//!
//! It serves the CA's GetRootCACertificate with the real root (public anyway), so a
//! joiner's unverified fetch succeeds and the refusal that matters, the verified
//! connection that would carry the join token, is what is tested.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use lnswarm_common::{
    api::{
        ca_server::{Ca, CaServer},
        GetRootCaCertificateRequest, GetRootCaCertificateResponse, IssueNodeCertificateRequest,
        IssueNodeCertificateResponse, NodeCertificateStatusRequest, NodeCertificateStatusResponse,
    },
    credentials::Credentials,
    tls,
};
use tokio::net::TcpListener;
use tonic::{service::Routes, Request, Response, Status};

pub struct Impostor {
    pub addr: String,
    handshakes: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    issue_calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

struct FakeCa {
    root_pem: String,
    issue_calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Ca for FakeCa {
    async fn get_root_ca_certificate(
        &self,
        _: Request<GetRootCaCertificateRequest>,
    ) -> Result<Response<GetRootCaCertificateResponse>, Status> {
        Ok(Response::new(GetRootCaCertificateResponse {
            certificate: self.root_pem.clone().into_bytes(),
            ..Default::default()
        }))
    }

    async fn issue_node_certificate(
        &self,
        _: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        self.issue_calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::internal("an impostor took the join token"))
    }

    async fn node_certificate_status(
        &self,
        _: Request<NodeCertificateStatusRequest>,
    ) -> Result<Response<NodeCertificateStatusResponse>, Status> {
        Err(Status::unimplemented("impostor"))
    }
}

impl Impostor {
    /// Serves on `addr` (a free loopback port when `None`) with `creds`.
    pub async fn start(creds: &Credentials, addr: Option<&str>) -> Impostor {
        let listener = TcpListener::bind(addr.unwrap_or("127.0.0.1:0"))
            .await
            .expect("bind the impostor");
        let addr = listener.local_addr().unwrap().to_string();
        let config = tls::server_config(&creds.cert_pem, &creds.key_pem).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let issue_calls = Arc::new(AtomicUsize::new(0));
        let routes = Routes::new(CaServer::new(FakeCa {
            root_pem: creds.ca_pem.clone(),
            issue_calls: issue_calls.clone(),
        }))
        .prepare();
        let (h, a) = (handshakes.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, remote)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (acceptor, routes, h) = (acceptor.clone(), routes.clone(), h.clone());
                tokio::spawn(async move {
                    let remote: SocketAddr = remote;
                    let Some((stream, _)) = tls::handshake(&acceptor, tcp, remote).await else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(routes))
                        .await;
                });
            }
        });
        Impostor {
            addr,
            handshakes,
            accepted,
            issue_calls,
            task,
        }
    }

    /// TLS handshakes the client completed (accepted the certificate).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// TCP connections made to it.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// IssueNodeCertificate calls it received (each would have carried a join token).
    pub fn issue_calls(&self) -> usize {
        self.issue_calls.load(Ordering::SeqCst)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
