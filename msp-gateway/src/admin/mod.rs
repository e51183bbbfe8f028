//! The admin listener: what the gateway is doing, as JSON, and its metrics
//! for Prometheus. Off unless `admin: {listen: …}` is configured; it
//! listens on its own port, never on the traffic port.
//!
//! | path | answer |
//! |---|---|
//! | `GET /routes` | every route: path, methods, services and weights, auth providers, rate limit and tracked keys |
//! | `GET /upstreams` | every upstream service: breaker state and failure rate, registry staleness, panic mode, instances with health, ejection and in-flight requests |
//! | `GET /auth` | the auth providers routes use: name, kind; for JWT providers the issuer, pinned algorithms, key ids, last JWKS fetch and its error |
//! | `GET /config` | the configuration version, reloads accepted and rejected, the last reload error |
//! | `GET /metrics` | Prometheus text format (when a recorder was installed with [`Admin::with_prometheus`]) |
//! | `GET /health` | `200 ok` |
//! | `DELETE /cache` | purges every route's [response cache](crate::cache); `DELETE /cache?route=ID` one route's (`404` if it never cached) |
//!
//! API keys, digests and secrets never appear: only provider names and
//! JWT key ids.
//!
//! # Example
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use msp_gateway::admin::Admin;
//! use msp_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig};
//! use msp_gateway::Gateway;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! let config = GatewayConfig::builder()
//!     .service("users", ServiceConfig::new(["127.0.0.1:9001".parse()?]))
//!     .route(RouteConfig::new("/api/users/*").service("users"))
//!     .build()?;
//! let admin = Admin::new(Gateway::from_config(config).await?);
//!
//! let req = http::Request::get("/upstreams").body(Empty::<bytes::Bytes>::new())?;
//! let res = admin.oneshot(req).await?;
//! let json: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
//! assert_eq!(json[0]["service"], "users");
//! assert_eq!(json[0]["breaker"], "closed");
//! assert_eq!(json[0]["instances"][0]["addr"], "127.0.0.1:9001");
//! # Ok(())
//! # }
//! ```

use crate::gateway::{Body, Gateway};
use futures_util::future::{Ready, ready};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use msp_core::shutdown::Shutdown;
use serde::Serialize;
use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};
use tokio::net::TcpListener;

/// The admin service (see the [module docs](self)); cheap to clone.
#[derive(Clone)]
pub struct Admin {
    gateway: Gateway,
    prometheus: Option<PrometheusHandle>,
}

/// The process already has a global metrics recorder: the admin listener
/// cannot install the Prometheus one.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct RecorderError(String);

impl Admin {
    /// Reports on `gateway`; `/metrics` answers `404` until
    /// [`with_prometheus`](Self::with_prometheus).
    pub fn new(gateway: Gateway) -> Self {
        Admin {
            gateway,
            prometheus: None,
        }
    }

    /// Installs the Prometheus recorder as the process's global `metrics`
    /// recorder and serves it on `/metrics`. Fails if another recorder is
    /// installed (there is one per process).
    pub fn with_prometheus(mut self) -> Result<Self, RecorderError> {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| RecorderError(e.to_string()))?;
        self.prometheus = Some(handle);
        Ok(self)
    }

    /// Serves the admin endpoints on `listener` until `shutdown` stops
    /// accepting.
    pub async fn serve(self, listener: TcpListener, shutdown: &Shutdown) -> std::io::Result<()> {
        crate::gateway::serve_service(self, listener, shutdown).await
    }

    fn answer(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
            res.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        match path {
            "/routes" => json(&self.gateway.routes()),
            "/upstreams" => json(&self.gateway.upstreams()),
            "/auth" => json(&self.gateway.auth_providers()),
            "/config" => json(&self.gateway.status()),
            "/health" => text(StatusCode::OK, "ok\n"),
            "/metrics" => match &self.prometheus {
                Some(handle) => {
                    handle.run_upkeep();
                    let mut res = Response::new(Body::full(handle.render()));
                    res.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    res
                }
                None => text(StatusCode::NOT_FOUND, "no Prometheus recorder installed\n"),
            },
            "/" => json(&[
                "/routes",
                "/upstreams",
                "/auth",
                "/config",
                "/metrics",
                "/health",
            ]),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl Admin {
    /// `DELETE /cache[?route=ID]`.
    fn purge(&self, query: Option<&str>) -> Response<Body> {
        let route = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| {
                let value = pair.strip_prefix("route=")?;
                Some(percent_encoding::percent_decode_str(value).decode_utf8_lossy())
            });
        let cache = self.gateway.cache();
        match route {
            None => {
                cache.purge_all();
                json(&serde_json::json!({ "purged": "all" }))
            }
            Some(id) if cache.purge_route(&id) => json(&serde_json::json!({ "purged": id })),
            Some(_) => text(StatusCode::NOT_FOUND, "no cache for that route\n"),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn json<T: Serialize + ?Sized>(value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(bytes) => {
            let mut res = Response::new(Body::full(bytes));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "serialisation failed\n"),
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("gateway", &self.gateway)
            .field("prometheus", &self.prometheus.is_some())
            .finish()
    }
}

impl<B> tower_service::Service<Request<B>> for Admin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::DELETE && req.uri().path() == "/cache" {
            return ready(Ok(self.purge(req.uri().query())));
        }
        ready(Ok(self.answer(req.method(), req.uri().path())))
    }
}
