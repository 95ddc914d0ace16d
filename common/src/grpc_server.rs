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

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::service::Routes;
use tower::{Layer, ServiceExt};

use crate::{authz::AuthzLayer, tls};

/// What a served service receives.
type Request = http::Request<hyper::body::Incoming>;

/// How long open calls may run on after shutdown begins. Streams (an agent's
/// session, a node's event subscription) never end on their own, so they are cut
/// after this and their clients reconnect.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a connection closed ahead of its client's certificate expiry may
/// finish the calls in flight. Short: an HTTP/2 client keeps a connection that
/// sent GOAWAY until its TCP connection closes, failing new calls meanwhile.
pub const EXPIRY_GRACE: Duration = Duration::from_millis(250);

/// Open connections one server keeps at most; past it new ones are closed at once
/// (a client opening thousands of connections cannot exhaust descriptors or
/// memory). 10 000 agents each hold one.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Open connections one source address may hold by default, so that one client
/// cannot take every slot of [`MAX_CONNECTIONS`] from the others. An agent's host
/// holds one for the agent and one per hosted node.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 1_000;
/// Concurrent calls (HTTP/2 streams) one connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// HTTP/2 pings on an idle connection, and how long the peer has to answer, so a
/// peer that vanished (a dead host, a cut network) releases its connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// When a connection whose client presented `peer`'s certificate must be closed:
/// before that certificate expires, so that the client reconnects with the one it
/// has renewed meanwhile (renewal is due by 80 % of the lifetime) instead of having
/// its calls refused. `None` when the client sent no certificate, or when that
/// moment has passed already: a client that reconnects with a certificate it could
/// not renew is not closed again and again, its calls are refused at expiry.
fn close_before_expiry(peer: &tls::PeerInfo) -> Option<tokio::time::Instant> {
    let cert = peer.certificates.first()?;
    let (not_before, not_after) = crate::pki::validity_of_der(cert)?;
    let (not_before, not_after) = (not_before * 1000, not_after * 1000);
    let margin = Duration::from_secs(2).as_millis() as i64;
    let after_renewal = not_before + (not_after - not_before) * 9 / 10;
    let close_ms = (not_after - margin).max(after_renewal);
    let wait = close_ms - crate::ids::now_unix_ms();
    (wait > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(wait as u64))
}

/// The connection slots of one server, shared by all its accepting threads: a
/// total and a share per source address. Past either, a new connection is closed
/// as soon as it is accepted, before its TLS handshake costs anything.
pub struct ConnectionLimits {
    total: Arc<tokio::sync::Semaphore>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    max_per_source: usize,
}

/// A connection's slot, given back when it closes.
struct Slot {
    limits: Arc<ConnectionLimits>,
    source: IpAddr,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_source = self.limits.lock();
        if let Some(n) = per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE)
    }
}

impl ConnectionLimits {
    /// At most `max_total` connections, `max_per_source` of them from one address
    /// (0: no limit per address).
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        ConnectionLimits {
            total: Arc::new(tokio::sync::Semaphore::new(max_total)),
            per_source: Mutex::default(),
            max_per_source: if max_per_source == 0 {
                usize::MAX
            } else {
                max_per_source
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `source`, or which limit is reached.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, &'static str> {
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "connection limit reached")?;
        let mut per_source = self.lock();
        let n = per_source.entry(source).or_default();
        if *n >= self.max_per_source {
            return Err("connection limit per source address reached");
        }
        *n += 1;
        Ok(Slot {
            limits: self.clone(),
            source,
            _total: total,
        })
    }
}

/// Accepts TLS connections on `listener` and serves `routes` behind `authz` on each
/// within `limits` until `shutdown` resolves; then stops accepting, lets open calls finish for up
/// to [`SHUTDOWN_GRACE`] and returns. A connection also ends, the same way, shortly
/// before its client's certificate expires.
pub async fn serve(
    listener: TcpListener,
    tls_config: Arc<ServerConfig>,
    authz: AuthzLayer,
    routes: Routes,
    limits: Arc<ConnectionLimits>,
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
    let mut refused_at: Option<tokio::time::Instant> = None;
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
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
        let permit = match limits.admit(remote_addr.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                // Full: close it now rather than queue it.
                if refused_at.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(%remote_addr, "{limit}; closing new connections");
                    refused_at = Some(tokio::time::Instant::now());
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, http, service, stop, authz) = (
            acceptor.clone(),
            http.clone(),
            service.clone(),
            stop.clone(),
            authz.clone(),
        );
        // The handshake runs in the connection's task, so a slow client cannot
        // stall the accept loop.
        connections.spawn(async move {
            let _permit = permit;
            let shaken = tokio::select! {
                shaken = tls::handshake(&acceptor, tcp, remote_addr) => shaken,
                () = stop.cancelled() => None,
            };
            let Some((stream, peer)) = shaken else {
                return;
            };
            let close_at = close_before_expiry(&peer);
            let mut trust_changes = authz.trust_changes();
            let retire_peer = peer.clone();
            // The authorization layer reads the peer from the request.
            let service = service.map_request(move |mut req: Request| {
                req.extensions_mut().insert(peer.clone());
                req
            });
            let connection =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(connection);
            let expiry = async {
                match close_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // A root rotation ending: a client whose certificate is from the root
            // being dropped reconnects with the one it renewed.
            let retired = async {
                if retire_peer.certificates.is_empty() {
                    return std::future::pending().await;
                }
                loop {
                    if trust_changes.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                    if authz.must_reconnect(&retire_peer) {
                        return;
                    }
                }
            };
            let ended = tokio::select! {
                ended = connection.as_mut() => Ok(ended),
                () = stop.cancelled() => Err(SHUTDOWN_GRACE),
                () = expiry => Err(EXPIRY_GRACE),
                () = retired => Err(EXPIRY_GRACE),
            };
            let ended = match ended {
                Ok(ended) => ended,
                Err(grace) => {
                    // GOAWAY: calls in flight finish; then the connection closes and
                    // the client opens a new one.
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(grace, connection).await {
                        Ok(ended) => ended,
                        Err(_) => {
                            tracing::debug!(%remote_addr, "closing a connection still busy after the grace period");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%remote_addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    let open = connections.len();
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), connections.wait())
        .await
        .is_err()
    {
        tracing::debug!(open, "connections still open after the grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_per_source_are_counted_and_given_back() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_err(), "a third from one address");
        let _b1 = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_err(), "past the total");
        drop(a1);
        assert!(
            limits.admit(a).is_ok(),
            "a closed connection frees its slot"
        );
    }
}
