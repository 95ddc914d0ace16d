//! The tower layer that enforces [`super::TABLE`] on every request, before routing.
//!
//! It verifies the peer certificate the TLS layer captured (see
//! [`crate::tls::PeerInfo`]), refuses with UNAUTHENTICATED or PERMISSION_DENIED, and
//! otherwise hands the verified [`Identity`] to the handler as a request extension.
//!
//! A certificate that verified once is remembered on its connection and, for new
//! connections, by the SHA-256 of its DER, until it expires: calls on long-lived
//! connections (agents' heartbeats) skip the signature check and the digest.
//! Revocation is still checked on every call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures::future::Either;
use tonic::Status;
use tower::{Layer, Service};

use super::table::{access_for, Access};
use crate::{
    pki::{Identity, PeerVerifier, Role},
    tls::PeerInfo,
};

/// Which node an `Owner` rule refers to on this server.
#[derive(Clone, Debug)]
pub enum NodeScope {
    /// The node is named in each request; handlers check it with [`require_owner`].
    PerRequest,
    /// This server serves one node (the Node API): the layer checks it.
    Node(String),
}

/// Most verified certificates remembered at once (the cache is emptied when full).
const MAX_VERIFIED: usize = 100_000;

/// A verified identity, when its certificate expires (Unix seconds), and the
/// generation of the trusted roots it was verified under.
pub type Verified = (Arc<Identity>, i64, u64);

/// Behind an `Arc`: hyper clones the service, and so the layer, for every call.
#[derive(Clone)]
pub struct AuthzLayer(Arc<Authz>);

struct Authz {
    verifier: PeerVerifier,
    scope: NodeScope,
    limits: Option<super::limits::AnonymousLimits>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

impl AuthzLayer {
    pub fn new(verifier: PeerVerifier, scope: NodeScope) -> Self {
        AuthzLayer(Arc::new(Authz {
            verifier,
            scope,
            limits: None,
            verified: Mutex::default(),
        }))
    }

    /// Rate-limits the [`Access::Anonymous`] calls (managers do; a hosted node
    /// serves none).
    pub fn with_anonymous_limits(
        verifier: PeerVerifier,
        config: super::limits::LimitConfig,
    ) -> Self {
        AuthzLayer(Arc::new(Authz {
            verifier,
            scope: NodeScope::PerRequest,
            limits: Some(super::limits::AnonymousLimits::new(config)),
            verified: Mutex::default(),
        }))
    }
}

impl AuthzLayer {
    /// Moves when the trusted roots change (see [`Self::must_reconnect`]).
    pub fn trust_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.verifier.changes()
    }

    /// Whether the connection `peer` came on should be closed now that the trusted
    /// roots changed: its client's certificate is from a root being dropped.
    pub fn must_reconnect(&self, peer: &PeerInfo) -> bool {
        let chain: Vec<&[u8]> = peer.certificates.iter().map(|c| c.as_ref()).collect();
        self.0.verifier.must_reconnect(&chain)
    }
}

impl Authz {
    /// The identity `peer`'s leaf certificate proves: remembered on the connection
    /// or in the cache while it is unexpired and not revoked, else by full
    /// verification.
    fn identity_of(&self, peer: &PeerInfo, cert: &[u8]) -> Result<Arc<Identity>, Status> {
        let now = crate::ids::now_unix_ms() / 1000;
        // An identity verified under other trusted roots (before a root rotation
        // finished) is verified again.
        let generation = self.verifier.generation();
        let remembered = peer
            .verified
            .get()
            .cloned()
            .filter(|v| v.2 == generation)
            .or_else(|| {
                let known = self.cached(cert).filter(|v| v.2 == generation)?;
                let _ = peer.verified.set(known.clone());
                Some(known)
            });
        if let Some((who, not_after, _)) = remembered {
            if now < not_after {
                if self.verifier.is_revoked(&who) {
                    return Err(Status::unauthenticated(
                        crate::pki::PkiError::Revoked.to_string(),
                    ));
                }
                return Ok(who);
            }
        }
        let intermediates: Vec<&[u8]> = peer.certificates[1..].iter().map(|c| c.as_ref()).collect();
        let who = Arc::new(
            self.verifier
                .verify_chain(cert, &intermediates)
                .map_err(|e| Status::unauthenticated(e.to_string()))?,
        );
        if let Some(not_after) = crate::pki::not_after_unix(cert) {
            let verified = (who.clone(), not_after, generation);
            let _ = peer.verified.set(verified.clone());
            let mut cache = self.verified.lock().expect("verified cache lock");
            if cache.len() >= MAX_VERIFIED {
                cache.clear();
            }
            cache.insert(digest(cert), verified);
        }
        Ok(who)
    }

    fn cached(&self, cert: &[u8]) -> Option<Verified> {
        self.verified
            .lock()
            .expect("verified cache lock")
            .get(&digest(cert))
            .cloned()
    }

    /// The decision for one call: the caller's identity (if it showed one) or the
    /// refusal.
    fn authorize(
        &self,
        path: &str,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Arc<Identity>>, Status> {
        let access = access_for(path)
            .ok_or_else(|| Status::unimplemented(format!("unknown method {path}")))?;
        let identity = match peer.and_then(|p| Some((p, p.certificates.first()?))) {
            Some((peer, cert)) => Some(self.identity_of(peer, cert)?),
            None => None,
        };
        let denied =
            |who: &Identity| Status::permission_denied(format!("{} may not call {path}", who.role));
        match (access, &identity) {
            (Access::Open, _) => Ok(identity),
            (Access::Anonymous, _) => {
                if let (Some(limits), Some(peer)) = (&self.limits, peer) {
                    limits.check(peer.remote_addr.ip())?;
                }
                Ok(identity)
            }
            (_, None) => Err(Status::unauthenticated(format!(
                "{path} requires a client certificate"
            ))),
            (Access::Roles(roles), Some(who)) if roles.contains(&who.role) => Ok(identity),
            (Access::Owner, Some(who)) if who.role == Role::User => {
                self.own_node(who, identity.clone())
            }
            (Access::OwnerRead, Some(who)) if matches!(who.role, Role::User | Role::Viewer) => {
                self.own_node(who, identity.clone())
            }
            (_, Some(who)) => Err(denied(who)),
        }
    }

    /// An owner's device may reach only the node it owns, where this server serves one.
    fn own_node(
        &self,
        who: &Identity,
        identity: Option<Arc<Identity>>,
    ) -> Result<Option<Arc<Identity>>, Status> {
        match &self.scope {
            NodeScope::Node(served) if who.node_id.as_deref() != Some(served.as_str()) => Err(
                Status::permission_denied("this certificate belongs to the owner of another node"),
            ),
            _ => Ok(identity),
        }
    }
}

fn digest(cert: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(cert).into()
}

impl<S> Layer<S> for AuthzLayer {
    type Service = AuthzService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthzService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthzService<S> {
    inner: S,
    layer: AuthzLayer,
}

/// Most request bytes read (and dropped) before a refusal is answered.
const DRAIN_LIMIT: usize = 1 << 20;

/// Reads the rest of a refused request's body, so the response does not end the
/// stream while the client is still sending: h2 would reset each such stream, and
/// after 1 024 of them it closes the whole connection (a caller refused by the
/// rate limit would lose its other calls). A body larger than [`DRAIN_LIMIT`], or
/// one that stalls, is abandoned.
async fn drain<B: http_body::Body + Unpin>(mut body: B) {
    let mut read = 0usize;
    let drained = async {
        while read <= DRAIN_LIMIT {
            match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += bytes::Buf::remaining(data);
                    }
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drained).await;
}

type Refusal<R, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for AuthzService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Error: Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Refusal<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let decision = self
            .layer
            .0
            .authorize(req.uri().path(), req.extensions().get::<PeerInfo>());
        match decision {
            Ok(identity) => {
                if let Some(identity) = identity {
                    req.extensions_mut().insert(identity);
                }
                Either::Left(self.inner.call(req))
            }
            Err(status) => {
                tracing::debug!(path = req.uri().path(), code = ?status.code(), "refused");
                let body = req.into_body();
                Either::Right(Box::pin(async move {
                    drain(body).await;
                    Ok(status.into_http())
                }))
            }
        }
    }
}

/// The verified caller of a request, if it showed a certificate.
pub fn caller<T>(req: &tonic::Request<T>) -> Option<&Identity> {
    req.extensions()
        .get::<Arc<Identity>>()
        .map(|who| who.as_ref())
}

/// The caller, who must own `node_id_hex` (used by Scheduler handlers, whose requests
/// name the node).
pub fn require_owner<'a, T>(
    req: &'a tonic::Request<T>,
    node_id_hex: &str,
) -> Result<&'a Identity, Status> {
    let who = caller(req).ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    if who.role != Role::User || who.node_id.as_deref() != Some(node_id_hex) {
        return Err(Status::permission_denied(if who.role == Role::Viewer {
            "this device was paired read-only"
        } else {
            "this certificate does not own the requested node"
        }));
    }
    Ok(who)
}

/// As [`require_owner`], also admitting the owner's read-only devices (for the
/// Scheduler calls that only read: Schedule, GetNodeInfo).
pub fn require_reader<'a, T>(
    req: &'a tonic::Request<T>,
    node_id_hex: &str,
) -> Result<&'a Identity, Status> {
    let who = caller(req).ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    if !matches!(who.role, Role::User | Role::Viewer) || who.node_id.as_deref() != Some(node_id_hex)
    {
        return Err(Status::permission_denied(
            "this certificate does not own the requested node",
        ));
    }
    Ok(who)
}

#[cfg(test)]
#[path = "layer_fuzz.rs"]
mod fuzz;
