//! The client side: inject the current context into outgoing requests.

use super::{TraceContext, current};
use http::Request;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

/// Injects `traceparent` / `tracestate` into outgoing requests.
///
/// The context comes from, in order: a [`TraceContext`] in the request's
/// extensions (a request forwarded by a gateway carries the one
/// [`TraceContextLayer`](super::TraceContextLayer) put there), or the task's
/// [`current`](super::current) context (a handler calling another service).
/// Each outgoing call gets a [`child`](TraceContext::child) context — same
/// trace id, a fresh span id — and headers already on the request are
/// replaced. A request with no context at all is sent without the headers,
/// unless [`new_root_when_missing`](Self::new_root_when_missing) is set.
///
/// The context actually sent is also stored in the request extensions, and
/// the call runs inside an `INFO` span named `trace_context_client`
/// (`otel.kind = "client"`) with fields `trace_id`, `span_id` (the
/// `parent-id` sent) and `parent_id`, which ends when the response arrives.
/// With the `otel` feature and an `observe::otel` layer
/// installed, that span is exported and its id is the one sent.
///
/// See the [module docs](super) for an example.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTraceContextLayer {
    root_when_missing: bool,
}

impl PropagateTraceContextLayer {
    /// The layer: propagates an existing context, starts none.
    pub fn new() -> Self {
        PropagateTraceContextLayer {
            root_when_missing: false,
        }
    }

    /// Starts a new trace for requests sent outside any context.
    #[must_use]
    pub fn new_root_when_missing(mut self, yes: bool) -> Self {
        self.root_when_missing = yes;
        self
    }
}

impl<S> Layer<S> for PropagateTraceContextLayer {
    type Service = PropagateTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTraceContext {
            inner,
            root_when_missing: self.root_when_missing,
        }
    }
}

/// The service made by [`PropagateTraceContextLayer`].
#[derive(Debug, Clone)]
pub struct PropagateTraceContext<S> {
    inner: S,
    root_when_missing: bool,
}

impl<S> PropagateTraceContext<S> {
    /// Wraps `inner` with the default settings of
    /// [`PropagateTraceContextLayer::new`].
    pub fn new(inner: S) -> Self {
        PropagateTraceContext {
            inner,
            root_when_missing: false,
        }
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

impl<S, B> Service<Request<B>> for PropagateTraceContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = PropagateTraceContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let parent = req
            .extensions()
            .get::<TraceContext>()
            .cloned()
            .or_else(current);
        let outgoing = match &parent {
            Some(parent) => Some(parent.child()),
            None if self.root_when_missing => Some(TraceContext::new_root()),
            None => None,
        };
        let Some(ctx) = outgoing else {
            return PropagateTraceContextFuture {
                inner: self.inner.call(req),
                span: Span::none(),
            };
        };
        let span = tracing::info_span!(
            "trace_context_client",
            otel.kind = "client",
            otel.name = %req.method(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_id = tracing::field::Empty,
        );
        #[cfg(feature = "otel")]
        let ctx = crate::observe::otel::link::client_span(&span, parent.as_ref(), ctx);
        super::record_ids(&span, &ctx);
        ctx.inject(req.headers_mut());
        req.extensions_mut().insert(ctx);
        let inner = span.in_scope(|| self.inner.call(req));
        PropagateTraceContextFuture { inner, span }
    }
}

pin_project! {
    /// The response future of [`PropagateTraceContext`]: polls the inner
    /// future inside the outgoing call's span, and closes the span when the
    /// response (or error) arrives.
    #[derive(Debug)]
    pub struct PropagateTraceContextFuture<F> {
        #[pin]
        inner: F,
        span: Span,
    }
}

impl<F: Future> Future for PropagateTraceContextFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = {
            let _enter = this.span.enter();
            this.inner.poll(cx)
        };
        if poll.is_ready() {
            // The call is over: end its span now, not when the future drops.
            *this.span = Span::none();
        }
        poll
    }
}
