//! The tower layer that enforces [`super::TABLE`] on every request, before routing.
//!
//! It verifies the peer certificate the TLS layer captured (see
//! [`crate::tls::PeerInfo`]), refuses with UNAUTHENTICATED or PERMISSION_DENIED, and
//! otherwise hands the verified [`Identity`] to the handler as a request extension.

use std::task::{Context, Poll};

use futures::future::{ready, Either, Ready};
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

#[derive(Clone)]
pub struct AuthzLayer {
    verifier: PeerVerifier,
    scope: NodeScope,
}

impl AuthzLayer {
    pub fn new(verifier: PeerVerifier, scope: NodeScope) -> Self {
        AuthzLayer { verifier, scope }
    }

    /// The decision for one call: the caller's identity (if it showed one) or the
    /// refusal.
    pub fn authorize(
        &self,
        path: &str,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Identity>, Status> {
        let access = access_for(path)
            .ok_or_else(|| Status::unimplemented(format!("unknown method {path}")))?;
        let identity = match peer.and_then(|p| p.certificates.first()) {
            Some(cert) => Some(
                self.verifier
                    .verify(cert)
                    .map_err(|e| Status::unauthenticated(e.to_string()))?,
            ),
            None => None,
        };
        let denied =
            |who: &Identity| Status::permission_denied(format!("{} may not call {path}", who.role));
        match (access, &identity) {
            (Access::Open, _) => Ok(identity),
            (_, None) => Err(Status::unauthenticated(format!(
                "{path} requires a client certificate"
            ))),
            (Access::Roles(roles), Some(who)) if roles.contains(&who.role) => Ok(identity),
            (Access::Owner, Some(who)) if who.role == Role::User => match &self.scope {
                NodeScope::Node(served) if who.node_id.as_deref() != Some(served.as_str()) => {
                    Err(Status::permission_denied(
                        "this certificate belongs to the owner of another node",
                    ))
                }
                _ => Ok(identity),
            },
            (_, Some(who)) => Err(denied(who)),
        }
    }
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

impl<S, B> Service<http::Request<B>> for AuthzService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let decision = self
            .layer
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
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

/// The verified caller of a request, if it showed a certificate.
pub fn caller<T>(req: &tonic::Request<T>) -> Option<&Identity> {
    req.extensions().get::<Identity>()
}

/// The caller, who must own `node_id_hex` (used by Scheduler handlers, whose requests
/// name the node).
pub fn require_owner<'a, T>(
    req: &'a tonic::Request<T>,
    node_id_hex: &str,
) -> Result<&'a Identity, Status> {
    let who = caller(req).ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    if who.role != Role::User || who.node_id.as_deref() != Some(node_id_hex) {
        return Err(Status::permission_denied(
            "this certificate does not own the requested node",
        ));
    }
    Ok(who)
}
