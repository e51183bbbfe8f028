//! Ties the spans of the trace-context layers to OpenTelemetry spans with
//! the same ids.
//!
//! The OpenTelemetry SDK picks the span id of every span it starts, so msp
//! does the reverse of a propagator: it gives the OpenTelemetry span the W3C
//! parent msp parsed, then adopts the trace and span ids the SDK assigned as
//! the ids of its own [`TraceContext`] — the ids it stores, logs and sends in
//! `traceparent`. Without an OpenTelemetry layer on the span (no layer
//! installed, span disabled or filtered out) nothing changes.

use crate::observe::trace_context::{SpanId, TraceContext, TraceId};
use opentelemetry::trace::{self as otel, TraceContextExt};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The OpenTelemetry view of an msp context.
fn span_context(ctx: &TraceContext, remote: bool) -> otel::SpanContext {
    otel::SpanContext::new(
        otel::TraceId::from_bytes(ctx.trace_id().to_bytes()),
        otel::SpanId::from_bytes(ctx.span_id().to_bytes()),
        otel::TraceFlags::new(ctx.flags().bits()),
        remote,
        ctx.state().as_str().parse().unwrap_or_default(),
    )
}

/// `ctx` with the ids of `span`'s OpenTelemetry span, when it has one.
fn adopt(span: &Span, ctx: TraceContext) -> TraceContext {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if !sc.is_valid() {
        return ctx;
    }
    match (
        TraceId::from_bytes(sc.trace_id().to_bytes()),
        SpanId::from_bytes(sc.span_id().to_bytes()),
    ) {
        (Some(trace_id), Some(span_id)) => ctx.with_ids(trace_id, span_id),
        _ => ctx,
    }
}

/// The server span: child of the caller's (remote) span.
pub(crate) fn server_span(
    span: &Span,
    caller: Option<&TraceContext>,
    ctx: TraceContext,
) -> TraceContext {
    if let Some(caller) = caller {
        // An error means no OpenTelemetry layer sees this span: nothing to do.
        let _ = span.set_parent(
            opentelemetry::Context::new().with_remote_span_context(span_context(caller, true)),
        );
    }
    adopt(span, ctx)
}

/// The client span of an outgoing call: child of the span the call is made
/// from, which is the parent context's span unless the context came from
/// elsewhere (a request forwarded with its extensions).
pub(crate) fn client_span(
    span: &Span,
    parent: Option<&TraceContext>,
    ctx: TraceContext,
) -> TraceContext {
    if let Some(parent) = parent {
        let current = Span::current().context();
        let current = current.span();
        let current = current.span_context();
        if !current.is_valid() || current.trace_id().to_bytes() != parent.trace_id().to_bytes() {
            let _ = span.set_parent(
                opentelemetry::Context::new().with_remote_span_context(span_context(parent, false)),
            );
        }
    }
    adopt(span, ctx)
}
