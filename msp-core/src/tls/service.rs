//! Moving a connection's verified identity into its requests' extensions.

use super::listener::{MtlsListener, TlsConnectInfo};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower_service::Service;

/// Wraps an axum app (any per-request service) so that `axum::serve` over
/// an [`MtlsListener`] gives every request the connection's
/// [`PeerIdentity`](crate::identity::PeerIdentity) (when the peer was
/// verified), its [`TlsConnectInfo`] and axum's `ConnectInfo<SocketAddr>`
/// in the request extensions.
///
/// ```no_run
/// use axum::{Extension, Router, routing::get};
/// use msp_core::identity::PeerIdentity;
/// use msp_core::tls::{IdentityFiles, MtlsListener, WorkloadIdentity, with_peer_identity};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = WorkloadIdentity::from_files(IdentityFiles::in_dir("certs", "payment-service"))?;
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// let listener = MtlsListener::new(tcp, &identity)?;
/// let app = Router::new().route(
///     "/whoami",
///     get(|Extension(peer): Extension<PeerIdentity>| async move { peer.to_string() }),
/// );
/// axum::serve(listener, with_peer_identity(app)).await?;
/// # Ok(())
/// # }
/// ```
pub fn with_peer_identity<S>(service: S) -> MakePeerIdentity<S> {
    MakePeerIdentity { inner: service }
}

/// The make-service [`with_peer_identity`] returns: for each accepted
/// connection, a [`PeerIdentityService`] around a clone of the app.
#[derive(Debug, Clone)]
pub struct MakePeerIdentity<S> {
    inner: S,
}

impl<S: Clone> Service<axum::serve::IncomingStream<'_, MtlsListener>> for MakePeerIdentity<S> {
    type Response = PeerIdentityService<S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: axum::serve::IncomingStream<'_, MtlsListener>) -> Self::Future {
        std::future::ready(Ok(PeerIdentityService::new(
            self.inner.clone(),
            stream.remote_addr().clone(),
        )))
    }
}

/// A per-connection service inserting the connection's identity into each
/// request's extensions before calling the inner service (see
/// [`with_peer_identity`]). With hyper, wrap the service of each connection
/// from [`MtlsListener::accept`] in one.
#[derive(Debug, Clone)]
pub struct PeerIdentityService<S> {
    inner: S,
    info: TlsConnectInfo,
}

impl<S> PeerIdentityService<S> {
    /// Wraps `inner` for the connection described by `info`.
    pub fn new(inner: S, info: TlsConnectInfo) -> Self {
        Self { inner, info }
    }

    /// The connection's info.
    pub fn connect_info(&self) -> &TlsConnectInfo {
        &self.info
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

impl<S, B> Service<http::Request<B>> for PeerIdentityService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let ext = req.extensions_mut();
        if let Some(peer) = self.info.peer_identity() {
            ext.insert(peer.clone());
        }
        ext.insert(axum::extract::ConnectInfo(self.info.remote_addr()));
        ext.insert(self.info.clone());
        self.inner.call(req)
    }
}
