//! The server span of `TraceContextLayer` carries the trace, span and parent
//! ids.
//!
//! Alone in its own test binary: tracing caches per-callsite interest
//! process-wide, and a test in the same process hitting the callsite with no
//! subscriber at the same moment could make this one miss its span.

use http::{HeaderValue, Request, Response};
use msp_core::observe::{TraceContext, TraceContextLayer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// Records the fields of every new span named `trace_context`.
#[derive(Clone, Default)]
struct SpanFields(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanFields {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() != "trace_context" {
            return;
        }
        struct V<'a>(&'a mut HashMap<String, String>);
        impl tracing::field::Visit for V<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = HashMap::new();
        attrs.record(&mut V(&mut fields));
        self.0.lock().expect("not poisoned").push(fields);
    }

    fn on_record(
        &self,
        _id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct V<'a>(&'a mut HashMap<String, String>);
        impl tracing::field::Visit for V<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        if let Some(last) = self.0.lock().expect("not poisoned").last_mut() {
            values.record(&mut V(last));
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
    let spans = fields.0.lock().expect("not poisoned").clone();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["span_id"], ctx.span_id().to_string());
    assert_eq!(span["parent_id"], "00f067aa0ba902b7");
}
