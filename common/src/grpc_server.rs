//! Serves a gRPC service over HTTP/2 on mutual-TLS connections: the manager's API
//! and each hosted node's Node API.
//!
//! tonic's `Server` does the same job, but hyper's `date` response header cannot be
//! turned off through it. Agents heartbeat once per period on long-lived
//! connections, so every response carried a date that had changed since the last
//! one and HPACK encoded it as a new literal. With tonic's per-call layers that we
//! do not use (a boxed service, a tracing span, a deadline timer), that cost about
//! 8 % of a manager's CPU at 10 000 agents (docs/BENCHMARKS.md). gRPC does not use
//! the header.
//!
//! Deadlines: a client whose deadline passes resets its stream, and hyper then
//! drops the handler's future, so the server needs no timer of its own.

use std::{future::Future, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tower::{Layer, ServiceExt};

use crate::{authz::AuthzLayer, tls};

/// What a served service receives.
type Request = http::Request<hyper::body::Incoming>;

/// How long open calls may run on after shutdown begins. Streams (an agent's
/// session, a node's event subscription) never end on their own, so they are cut
/// after this and their clients reconnect.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Open connections one server keeps at most; past it new ones are closed at once
/// (a client opening thousands of connections cannot exhaust descriptors or
/// memory). 10 000 agents each hold one.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Concurrent calls (HTTP/2 streams) one connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// HTTP/2 pings on an idle connection, and how long the peer has to answer, so a
/// peer that vanished (a dead host, a cut network) releases its connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Accepts TLS connections on `listener` and serves `routes` behind `authz` on each
/// until `shutdown` resolves; then stops accepting, lets open calls finish for up
/// to [`SHUTDOWN_GRACE`] and returns.
pub async fn serve(
    listener: TcpListener,
    tls_config: Arc<ServerConfig>,
    authz: AuthzLayer,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    let service = authz.layer(routes.prepare());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .auto_date_header(false)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused_at: Option<tokio::time::Instant> = None;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote_addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Full: close it now rather than queue it.
            if refused_at.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(max = MAX_CONNECTIONS, %remote_addr, "connection limit reached; closing new connections");
                refused_at = Some(tokio::time::Instant::now());
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, http, service, watcher) = (
            acceptor.clone(),
            http.clone(),
            service.clone(),
            graceful.watcher(),
        );
        // The handshake runs in the connection's task, so a slow client cannot
        // stall the accept loop.
        tokio::spawn(async move {
            let _permit = permit;
            let Some((stream, peer)) = tls::handshake(&acceptor, tcp, remote_addr).await else {
                return;
            };
            // The authorization layer reads the peer from the request.
            let service = service.map_request(move |mut req: Request| {
                req.extensions_mut().insert(peer.clone());
                req
            });
            let connection =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%remote_addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(
            open,
            "closing connections still open after the grace period"
        );
    }
}
