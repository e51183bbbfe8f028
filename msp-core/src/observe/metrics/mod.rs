//! RED metrics (rate, errors, duration) for HTTP services, over the
//! `metrics` crate's facade.
//!
//! [`MetricsLayer`] records, for every request:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `msp_http_requests_total` | counter | `service`, `route`, `method`, `status_class` |
//! | `msp_http_errors_total` | counter | `service`, `route`, `method`, `status_class` |
//! | `msp_http_request_duration_seconds` | histogram | `service`, `route`, `method`, `status_class` |
//! | `msp_http_requests_in_flight` | gauge | `service`, `route`, `method` |
//!
//! - `status_class` is `1xx`…`5xx`, or `error` when the inner service
//!   returned an `Err`.
//! - An *error* is a result the [`Classify`] calls
//!   [`Outcome::Failure`](crate::Outcome::Failure) — with the default [`HttpClassifier`], an `Err`
//!   or a `5xx` — or a response body that fails while streaming.
//! - The duration runs from the call until the **response body ends** (its
//!   last frame is read, it fails, or it is dropped), so streamed responses
//!   are timed in full. It is measured with `tokio::time::Instant`.
//! - A request is counted when its response head is ready. A request whose
//!   future is dropped before that (the client went away) is not counted,
//!   but leaves the in-flight gauge all the same: the gauge is decremented by
//!   a guard, whatever happens.
//! - `method` is the method name for the standard methods and `other` for
//!   extension methods, so clients cannot create label values at will.
//!
//! # The `route` label
//!
//! Labelling by raw path would create one time series per user id. The
//! default [`collapse_path`] replaces numeric, UUID-like and long hex path
//! segments with `{id}` (`/users/42/orders` → `/users/{id}/orders`). Services
//! with a router know the route template; give it with
//! [`MetricsLayer::route_fn`]. With axum, apply the layer with
//! `Router::layer` (so it runs after routing) and read `MatchedPath`:
//!
//! ```
//! use axum::{Router, extract::MatchedPath, routing::get};
//! use msp_core::observe::MetricsLayer;
//!
//! let metrics = MetricsLayer::new("orders").route_fn(|_uri, ext| {
//!     ext.get::<MatchedPath>()
//!         .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
//! });
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "an order" }))
//!     .layer(metrics);
//! ```
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use msp_core::observe::MetricsLayer;
//! use std::convert::Infallible;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Infallible> {
//! let svc = ServiceBuilder::new()
//!     .layer(MetricsLayer::new("orders"))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("ok")))
//!     }));
//! let res = svc.oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

pub mod future;

use self::future::{Guard, ResponseFuture};
use crate::classify::{Classify, HttpClassifier};
use ::metrics::{Label, SharedString};
use http::{Extensions, Method, Request, Response, Uri};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Name of the request counter.
pub const REQUESTS_TOTAL: &str = "msp_http_requests_total";
/// Name of the error counter.
pub const ERRORS_TOTAL: &str = "msp_http_errors_total";
/// Name of the duration histogram (seconds).
pub const REQUEST_DURATION_SECONDS: &str = "msp_http_request_duration_seconds";
/// Name of the in-flight gauge.
pub const REQUESTS_IN_FLIGHT: &str = "msp_http_requests_in_flight";

/// Histogram buckets (seconds) suited to request durations, from 1 ms to
/// 10 s, for exporters that need them (e.g. `metrics-exporter-prometheus`'s
/// `set_buckets_for_metric`).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers the descriptions and units of the four metrics with the
/// installed recorder (exporters print them as `# HELP`).
pub fn describe() {
    ::metrics::describe_counter!(REQUESTS_TOTAL, "HTTP requests answered, by status class.");
    ::metrics::describe_counter!(
        ERRORS_TOTAL,
        "HTTP requests that failed (classified as failures: errors and 5xx by default)."
    );
    ::metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        ::metrics::Unit::Seconds,
        "Time from the request until the end of the response body."
    );
    ::metrics::describe_gauge!(REQUESTS_IN_FLIGHT, "HTTP requests being served.");
}

type RouteFn = dyn Fn(&Uri, &Extensions) -> String + Send + Sync;

/// Collapses the path segments that are ids, to keep the `route` label's
/// cardinality bounded: all-digit segments, UUIDs (with or without dashes)
/// and hex strings of 16 characters or more become `{id}`. The query is not
/// part of a path.
///
/// ```
/// use msp_core::observe::metrics::collapse_path;
///
/// assert_eq!(collapse_path("/users/42/orders"), "/users/{id}/orders");
/// assert_eq!(
///     collapse_path("/o/6f1c1b1e-9a8e-4c41-8d5b-2b8a7d1f0c3e"),
///     "/o/{id}"
/// );
/// assert_eq!(collapse_path("/health/ready"), "/health/ready");
/// ```
pub fn collapse_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hex = seg.bytes().filter(|b| *b != b'-').collect::<Vec<_>>();
    let dashes = seg.len() - hex.len();
    let all_hex = hex.iter().all(u8::is_ascii_hexdigit);
    (all_hex && dashes == 4 && hex.len() == 32) || (all_hex && dashes == 0 && hex.len() >= 16)
}

fn default_route(uri: &Uri, _: &Extensions) -> String {
    collapse_path(uri.path())
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Records RED metrics for an HTTP service; see the [module docs](self).
///
/// `C` decides which results are errors: [`HttpClassifier`] by default, any
/// [`Classify`] with [`classifier`](Self::classifier).
#[derive(Clone)]
pub struct MetricsLayer<C = HttpClassifier> {
    service: SharedString,
    route: Arc<RouteFn>,
    classifier: C,
}

impl<C: fmt::Debug> fmt::Debug for MetricsLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("service", &self.service)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl MetricsLayer {
    /// Metrics labelled `service = <service>`, routes from [`collapse_path`],
    /// errors per [`HttpClassifier`].
    pub fn new(service: impl AsRef<str>) -> Self {
        MetricsLayer {
            service: SharedString::from(Arc::<str>::from(service.as_ref())),
            route: Arc::new(default_route),
            classifier: HttpClassifier::new(),
        }
    }
}

impl<C> MetricsLayer<C> {
    /// Computes the `route` label from the request's URI and extensions
    /// (for axum, from `MatchedPath`; see the [module docs](self)).
    #[must_use]
    pub fn route_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Uri, &Extensions) -> String + Send + Sync + 'static,
    {
        self.route = Arc::new(f);
        self
    }

    /// Decides errors with `classifier` instead.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> MetricsLayer<C2> {
        MetricsLayer {
            service: self.service,
            route: self.route,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for MetricsLayer<C> {
    type Service = Metrics<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            shared: Arc::new(Shared {
                service: self.service.clone(),
                route: self.route.clone(),
                classifier: self.classifier.clone(),
            }),
        }
    }
}

pub(crate) struct Shared<C> {
    pub(crate) service: SharedString,
    route: Arc<RouteFn>,
    pub(crate) classifier: C,
}

/// The service made by [`MetricsLayer`].
pub struct Metrics<S, C = HttpClassifier> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for Metrics<S, C> {
    fn clone(&self) -> Self {
        Metrics {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Metrics<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .field("service", &self.shared.service)
            .field("classifier", &self.shared.classifier)
            .finish_non_exhaustive()
    }
}

impl<S> Metrics<S> {
    /// Wraps `inner` with [`MetricsLayer::new`]'s settings.
    pub fn new(inner: S, service: impl AsRef<str>) -> Self {
        MetricsLayer::new(service).layer(inner)
    }
}

impl<S, C> Metrics<S, C> {
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

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: Classify<Response<ResBody>, S::Error>,
{
    type Response = Response<future::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let route = (self.shared.route)(req.uri(), req.extensions());
        let method = method_label(req.method());
        let guard = Guard::new(self.shared.service.clone(), route, method);
        ResponseFuture::new(self.inner.call(req), guard, self.shared.clone())
    }
}

pub(crate) fn labels(service: &SharedString, route: &str, method: &'static str) -> Vec<Label> {
    vec![
        Label::new("service", service.clone()),
        Label::new("route", route.to_owned()),
        Label::from_static_parts("method", method),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_ids_only() {
        assert_eq!(collapse_path("/"), "/");
        assert_eq!(collapse_path("/a/1/b/22"), "/a/{id}/b/{id}");
        assert_eq!(collapse_path("/x/0123456789abcdef"), "/x/{id}");
        assert_eq!(collapse_path("/x/0123456789abcde"), "/x/0123456789abcde");
        assert_eq!(collapse_path("/v2/users"), "/v2/users");
        assert_eq!(
            collapse_path("/x/6F1C1B1E9A8E4C418D5B2B8A7D1F0C3E"),
            "/x/{id}"
        );
    }
}
