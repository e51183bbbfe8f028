//! The server span of `TraceContextLayer` and the client span of
//! `PropagateTraceContextLayer` carry the trace, span and parent ids.
//!
//! Alone in its own test binary: tracing caches per-callsite interest
//! process-wide, and a test in the same process hitting the callsite with no
//! subscriber at the same moment could make this one miss its span.

use http::{HeaderValue, Request, Response};
use msp_core::observe::trace_context::scope;
use msp_core::observe::{PropagateTraceContextLayer, TraceContext, TraceContextLayer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A span seen: its id, name and fields.
type Seen = (u64, &'static str, HashMap<String, String>);

/// Records the fields of every span of the two trace-context layers, by name.
#[derive(Clone, Default)]
struct SpanFields(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl SpanFields {
    fn named(&self, name: &str) -> Vec<HashMap<String, String>> {
        let spans = self.0.lock().expect("not poisoned");
        spans
            .iter()
            .filter(|(_, n, _)| *n == name)
            .map(|(_, _, f)| f.clone())
            .collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanFields {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let name = attrs.metadata().name();
        if name != "trace_context" && name != "trace_context_client" {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .expect("not poisoned")
            .push((id.into_u64(), name, fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut spans = self.0.lock().expect("not poisoned");
        if let Some((_, _, fields)) = spans.iter_mut().find(|(i, _, _)| *i == id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test]
async fn server_span_carries_trace_span_and_parent_ids() {
    use tracing_subscriber::layer::SubscriberExt;
    let fields = SpanFields::default();
    let subscriber = tracing_subscriber::registry().with(fields.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut req = Request::new(());
    req.headers_mut().insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let svc = ServiceBuilder::new()
        .layer(TraceContextLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            let ctx = req.extensions().get::<TraceContext>().cloned();
            Ok::<_, Infallible>(Response::new(ctx))
        }));
    let ctx = svc
        .oneshot(req)
        .await
        .expect("infallible")
        .into_body()
        .expect("the layer always inserts a context");
    let spans = fields.named("trace_context");
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["span_id"], ctx.span_id().to_string());
    assert_eq!(span["parent_id"], "00f067aa0ba902b7");
    assert_eq!(span["otel.kind"], "\"server\"");
}

#[tokio::test]
async fn outgoing_calls_run_in_a_client_span_named_by_the_sent_parent_id() {
    use tracing_subscriber::layer::SubscriberExt;
    let fields = SpanFields::default();
    let subscriber = tracing_subscriber::registry().with(fields.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = ServiceBuilder::new()
        .layer(PropagateTraceContextLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            let sent = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<TraceContext>().ok());
            Ok::<_, Infallible>(Response::new(sent))
        }));
    let caller: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("valid");
    let mine = caller.child();
    let sent = scope(mine.clone(), client.clone().oneshot(Request::new(())))
        .await
        .expect("infallible")
        .into_body()
        .expect("traceparent sent");

    let spans = fields.named("trace_context_client");
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["span_id"], sent.span_id().to_string());
    assert_eq!(span["parent_id"], mine.span_id().to_string());
    assert_eq!(span["otel.kind"], "\"client\"");
    assert_eq!(span["otel.name"], "GET");

    // Outside any context (and not asked to start one): no span, no header.
    let sent = client.oneshot(Request::new(())).await.expect("infallible");
    assert!(sent.into_body().is_none());
    assert_eq!(fields.named("trace_context_client").len(), 1);
}
