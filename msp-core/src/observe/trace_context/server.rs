//! The server side: extract the caller's context, open a span for this hop.

use super::{CURRENT, TraceContext, sync_scope};
use http::Request;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

/// Extracts the W3C trace context of incoming requests.
///
/// For each request [`TraceContextService`]:
///
/// 1. parses `traceparent`/`tracestate` ([`TraceContext::from_headers`]);
///    a missing or malformed header starts a new trace
///    ([`TraceContext::new_root`]) — it is never an error;
/// 2. makes the context of this hop, a [`child`](TraceContext::child) of the
///    caller's, and inserts it into the request extensions, where handlers
///    and [`PropagateTraceContextLayer`](super::PropagateTraceContextLayer)
///    find it;
/// 3. calls the inner service, and polls its future, inside an `INFO` span
///    named `trace_context` (`otel.kind = "server"`) with fields
///    `trace_id`, `span_id` and `parent_id`, with the context as the task's
///    [`current`](super::current) one.
///
/// With the `otel` feature and an `observe::otel` layer
/// installed, the span is exported to OpenTelemetry as the child of the
/// caller's span (the remote parent from `traceparent`), and its span id is
/// the context's [`span_id`](TraceContext::span_id) — so the ids msp
/// propagates are the ids the tracing backend shows.
///
/// See the [module docs](super) for an example.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer {
    _priv: (),
}

impl TraceContextLayer {
    /// The layer.
    pub fn new() -> Self {
        TraceContextLayer { _priv: () }
    }
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService::new(inner)
    }
}

/// The service made by [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S> TraceContextService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        TraceContextService { inner }
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

impl<S, B> Service<Request<B>> for TraceContextService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let caller = TraceContext::from_headers(req.headers());
        let ctx = match &caller {
            Some(caller) => caller.child(),
            None => TraceContext::new_root(),
        };
        let span = tracing::info_span!(
            "trace_context",
            otel.kind = "server",
            otel.name = %req.method(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_id = tracing::field::Empty,
        );
        #[cfg(feature = "otel")]
        let ctx = crate::observe::otel::link::server_span(&span, caller.as_ref(), ctx);
        super::record_ids(&span, &ctx);
        req.extensions_mut().insert(ctx.clone());
        let inner = &mut self.inner;
        let fut = sync_scope(ctx.clone(), || span.in_scope(|| inner.call(req)));
        ResponseFuture {
            inner: CURRENT.scope(ctx, fut),
            span,
        }
    }
}

pin_project! {
    /// The response future of [`TraceContextService`]: polls the inner future
    /// inside the request's span and with its trace context as the task's
    /// current one.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<TraceContext, F>,
        span: Span,
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = this.span.enter();
        this.inner.poll(cx)
    }
}
