//! [`Authorization`], the service.

use super::PolicyHandle;
use super::error::PermissionDenied;
use super::future::ResponseFuture;
use super::layer::{PeerIp, connection_peer};
use crate::http::ProblemBody;
use http::{Request, Response};
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service that lets through only the requests its policies allow.
///
/// A denied request never reaches the inner service: it is answered
/// `403` problem+json, or for gRPC `200` with `grpc-status: 7`
/// ([`PermissionDenied`]). A request whose path or host is ambiguous is
/// answered `400` ([`MalformedRequest`](super::MalformedRequest)) before any policy is evaluated.
/// The inner service's errors pass through.
///
/// Clones share the [`PolicyHandle`]: cloning is one reference-count
/// increment, with no allocation (axum clones the service per request).
#[derive(Clone)]
pub struct Authorization<S> {
    inner: S,
    policies: PolicyHandle,
    peer_ip: PeerIp,
}

impl<S: fmt::Debug> fmt::Debug for Authorization<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("inner", &self.inner)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl<S> Authorization<S> {
    /// Authorizes requests to `inner` against `policies`, reading the
    /// peer's address from a `SocketAddr` or `ConnectInfo<SocketAddr>`
    /// extension.
    pub fn new(inner: S, policies: impl Into<PolicyHandle>) -> Self {
        Self::with_peer_ip(inner, policies.into(), connection_peer)
    }

    pub(super) fn with_peer_ip(inner: S, policies: PolicyHandle, peer_ip: PeerIp) -> Self {
        Authorization {
            inner,
            policies,
            peer_ip,
        }
    }

    /// The shared policy handle.
    pub fn policies(&self) -> &PolicyHandle {
        &self.policies
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorization<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ProblemBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let peer_ip = (self.peer_ip)(req.extensions());
        let decision = self.policies.with(|policies| {
            let decision = policies.decide(&req, peer_ip);
            match decision.malformed() {
                Some(malformed) => Err(Some(malformed)),
                None if decision.is_allowed() => Ok(()),
                None => Err(None),
            }
        });
        match decision {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(Some(malformed)) => ResponseFuture::denied(malformed.problem_response()),
            Err(None) => {
                ResponseFuture::denied(PermissionDenied::new().response_for(req.headers()))
            }
        }
    }
}
