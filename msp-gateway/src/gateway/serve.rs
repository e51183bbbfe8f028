//! Serving a [`Gateway`] over TCP: hyper-util's auto server (HTTP/1.1 and
//! h2c), the peer address handed to the proxy, request ids and W3C trace
//! context, graceful shutdown through msp-core.

use super::{Body, Gateway};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use msp_core::observe::{
    MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer, TraceContextLayer,
};
use msp_core::shutdown::Shutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

/// One connection's service: the gateway with the peer address.
#[derive(Clone)]
struct Connection<S> {
    svc: S,
    peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        let svc = self.svc.clone();
        Box::pin(svc.oneshot(req))
    }
}

impl Gateway {
    /// Serves the gateway on `listener` until the process ends (see
    /// [`serve_with_shutdown`](Self::serve_with_shutdown)).
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, &Shutdown::new()).await
    }

    /// Serves the gateway on `listener`: HTTP/1.1 and HTTP/2 without TLS
    /// (h2c, for gRPC) on the same port, upgrades (WebSocket) included.
    /// Each request gets an `x-request-id` (kept when the client sent one,
    /// copied to the response) and a W3C trace context (the client's
    /// `traceparent` continued, the upstream called as its child).
    ///
    /// When `shutdown` is triggered the listener stops accepting, open
    /// connections finish their requests and close (HTTP/1 after the
    /// response in flight, HTTP/2 with GOAWAY), and each connection counts
    /// in `shutdown`'s drain until it closes.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: &Shutdown,
    ) -> std::io::Result<()> {
        let svc = ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceContextLayer::new())
            .layer(PropagateRequestIdLayer::x_request_id())
            .service(self);
        serve_service(svc, listener, shutdown).await
    }
}

/// Serves `svc` on `listener` (HTTP/1.1 + h2c, upgrades) until `shutdown`
/// stops accepting; each connection drains gracefully.
pub(crate) async fn serve_service<S>(
    svc: S,
    listener: TcpListener,
    shutdown: &Shutdown,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut stop = std::pin::pin!(shutdown.stop_accepting());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // EMFILE and friends: keep serving the others.
                    tracing::warn!(%error, "accept failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
            () = &mut stop => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let conn_svc = Connection {
            svc: svc.clone(),
            peer,
        };
        let builder = builder.clone();
        let guard = shutdown.in_flight_guard();
        let signal = shutdown.stop_accepting();
        tokio::spawn(async move {
            let _guard = guard;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), conn_svc);
            let mut conn = std::pin::pin!(conn);
            let mut signal = std::pin::pin!(signal);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                    return;
                }
                () = &mut signal => conn.as_mut().graceful_shutdown(),
            }
            if let Err(error) = conn.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
}
