//! Observability layers: RED metrics, W3C trace context, request ids.
//!
//! - [`metrics`]: [`MetricsLayer`] records request count, errors, duration
//!   and in-flight requests over the [`metrics`](::metrics) facade, labelled
//!   by service, route, method and status class.
//! - [`trace_context`]: [`TraceContextLayer`] extracts W3C `traceparent` /
//!   `tracestate` into a `tracing` span on the server side;
//!   [`PropagateTraceContextLayer`] injects them on the client side.
//! - [`spawn_in_context`] (or [`InCurrentTrace::in_current_trace`]) carries
//!   the trace context into `tokio::spawn`ed tasks.
//! - `otel` (feature `otel`): exports the spans of the two trace-context
//!   layers with the OpenTelemetry SDK over OTLP/HTTP, with the W3C ids msp
//!   propagates.
//! - Request ids and request/response logging are tower-http's
//!   ([`SetRequestIdLayer`], [`PropagateRequestIdLayer`], [`TraceLayer`],
//!   re-exported here); msp does not rewrite them.
//!
//! [`layer`] stacks all of them in the right order for a server:
//!
//! ```text
//! SetRequestIdLayer (x-request-id, UUID v4 when missing)
//!  └ TraceContextLayer (trace_context span, TraceContext extension)
//!     └ TraceLayer (tower-http request span and events)
//!        └ PropagateRequestIdLayer (x-request-id copied to the response)
//!           └ MetricsLayer
//!              └ your service
//! ```
//!
//! # Example
//!
//! ```
//! use axum::{Router, extract::MatchedPath, routing::get};
//! use msp_core::observe::{self, metrics::collapse_path};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = observe::layer("orders").route_fn(|uri, ext| {
//!     ext.get::<MatchedPath>()
//!         .map_or_else(|| collapse_path(uri.path()), |p| p.as_str().to_owned())
//! });
//! // `Router::layer` wraps each route, after routing: `MatchedPath` is set.
//! let app = Router::new()
//!     .route("/orders/{id}", get(|| async { "an order" }))
//!     .layer(stack);
//!
//! let res = app
//!     .oneshot(http::Request::get("/orders/7").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(res.status(), 200);
//! assert!(res.headers().contains_key("x-request-id"));
//! # Ok(())
//! # }
//! ```

pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod trace_context;

pub use self::metrics::{Metrics, MetricsLayer};
pub use self::trace_context::{
    InCurrentTrace, PropagateTraceContext, PropagateTraceContextLayer, TraceContext,
    TraceContextLayer, TraceContextService, spawn_in_context,
};
/// tower-http's request-id types, re-exported because [`layer`] stacks them
/// and a stack built by hand (as msp-gateway's is) needs the same ones. They
/// are tower-http's own types, not msp's, and follow tower-http's versions.
pub use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
/// tower-http's `TraceLayer`, re-exported for the same reason as the
/// request-id types above.
pub use tower_http::trace::TraceLayer;

use crate::classify::HttpClassifier;
use http::{Extensions, Uri};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{PropagateRequestId, SetRequestId};
use tower_http::trace::Trace;
use tower_layer::Layer;

/// The server stack of the [module docs](self), for service `service`.
///
/// Tune the metrics part with [`ObserveLayer::route_fn`] or
/// [`ObserveLayer::metrics`].
pub fn layer(service: impl AsRef<str>) -> ObserveLayer {
    ObserveLayer {
        metrics: MetricsLayer::new(service),
    }
}

/// request id + trace context + tower-http trace + metrics, as one layer;
/// made by [`layer`].
#[derive(Debug, Clone)]
pub struct ObserveLayer<C = HttpClassifier> {
    metrics: MetricsLayer<C>,
}

impl<C> ObserveLayer<C> {
    /// Sets the `route` label function of the metrics layer
    /// ([`MetricsLayer::route_fn`]).
    #[must_use]
    pub fn route_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Uri, &Extensions) -> String + Send + Sync + 'static,
    {
        self.metrics = self.metrics.route_fn(f);
        self
    }

    /// Replaces the metrics layer (to change its classifier, say).
    #[must_use]
    pub fn metrics<C2>(self, metrics: MetricsLayer<C2>) -> ObserveLayer<C2> {
        ObserveLayer { metrics }
    }
}

/// The service stack [`ObserveLayer`] builds around `S`.
pub type Observe<S, C = HttpClassifier> = SetRequestId<
    TraceContextService<
        Trace<PropagateRequestId<Metrics<S, C>>, SharedClassifier<ServerErrorsAsFailures>>,
    >,
    MakeRequestUuid,
>;

impl<S, C: Clone> Layer<S> for ObserveLayer<C> {
    type Service = Observe<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.metrics.layer(inner);
        let inner = PropagateRequestIdLayer::x_request_id().layer(inner);
        let inner = TraceLayer::new_for_http().layer(inner);
        let inner = TraceContextLayer::new().layer(inner);
        SetRequestIdLayer::x_request_id(MakeRequestUuid).layer(inner)
    }
}
