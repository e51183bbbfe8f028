//! The tower service answering the health probes.

use super::{HealthRegistry, HealthReport, Status};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Answers the health probes from a [`HealthRegistry`].
///
/// - `GET`/`HEAD` on the liveness path (default `/health/live`) and the
///   readiness path (default `/health/ready`): `200` when up, `503` when
///   down, with the [`HealthReport`] as JSON (`HEAD`: no body) and
///   `Cache-Control: no-store`.
/// - another method on those paths: `405` with `Allow: GET, HEAD`;
/// - any other path: `404`.
///
/// With axum, mount it on both paths with `route_service` (which keeps the
/// full path): `.route_service("/health/live", health.service())
/// .route_service("/health/ready", health.service())`.
#[derive(Clone)]
pub struct HealthService {
    registry: HealthRegistry,
    live: Arc<str>,
    ready: Arc<str>,
}

impl fmt::Debug for HealthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthService")
            .field("registry", &self.registry)
            .field("live", &self.live)
            .field("ready", &self.ready)
            .finish()
    }
}

impl HealthService {
    /// The default liveness path.
    pub const LIVE_PATH: &'static str = "/health/live";
    /// The default readiness path.
    pub const READY_PATH: &'static str = "/health/ready";

    /// Answers from `registry` on the default paths.
    pub fn new(registry: HealthRegistry) -> Self {
        HealthService {
            registry,
            live: Self::LIVE_PATH.into(),
            ready: Self::READY_PATH.into(),
        }
    }

    /// Answers on other paths.
    #[must_use]
    pub fn with_paths(mut self, live: impl AsRef<str>, ready: impl AsRef<str>) -> Self {
        self.live = live.as_ref().into();
        self.ready = ready.as_ref().into();
        self
    }

    /// The registry answered from.
    pub fn registry(&self) -> &HealthRegistry {
        &self.registry
    }
}

fn simple(status: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

fn render(report: &HealthReport, head: bool) -> Response<Full<Bytes>> {
    let status = match report.status {
        Status::Up => StatusCode::OK,
        Status::Down => StatusCode::SERVICE_UNAVAILABLE,
    };
    // Serialising plain strings, numbers and maps cannot fail; answer 500
    // rather than panic if it ever did.
    let Ok(json) = serde_json::to_vec(report) else {
        return simple(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let len = json.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(json)
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    res
}

impl<B> Service<Request<B>> for HealthService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let live = path == &*self.live;
        if !live && path != &*self.ready {
            return ResponseFuture::ready(simple(StatusCode::NOT_FOUND));
        }
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut res = simple(StatusCode::METHOD_NOT_ALLOWED);
                res.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                return ResponseFuture::ready(res);
            }
        };
        let registry = self.registry.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let report = if live {
                    registry.liveness().await
                } else {
                    registry.readiness().await
                };
                Ok(render(&report, head))
            }),
        }
    }
}

/// The response future of [`HealthService`] (boxed: it runs the checks).
pub struct ResponseFuture {
    inner: BoxFuture<'static, Result<Response<Full<Bytes>>, Infallible>>,
}

impl ResponseFuture {
    fn ready(res: Response<Full<Bytes>>) -> Self {
        ResponseFuture {
            inner: Box::pin(std::future::ready(Ok(res))),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
