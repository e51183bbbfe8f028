//! OpenTelemetry export over OTLP/HTTP across two services.
//!
//! A caller sends a `traceparent` to service A; A calls service B through
//! `PropagateTraceContextLayer`. Both export their spans with
//! `observe::otel` to an OTLP/HTTP receiver in this test, which decodes the
//! real protobuf payload (`ExportTraceServiceRequest`). The exported ids
//! must be the W3C chain: caller → A's server span → A's client span → B's
//! server span, all in the caller's trace.
//!
//! Alone in its own test binary: it installs the global subscriber.
#![cfg(feature = "otel")]

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::observe::otel::OtlpExporter;
use msp_core::observe::{PropagateTraceContextLayer, TraceContext, TraceContextLayer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// An OTLP/HTTP receiver: every span of every export request, decoded from
/// protobuf, with its resource's `service.name`.
async fn receiver() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Span)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let request =
                    ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf payload");
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            any_value::Value::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope_spans in resource_spans.scope_spans {
                        for span in scope_spans.spans {
                            let _ = tx.send((service.clone(), span));
                        }
                    }
                }
                (
                    StatusCode::OK,
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    (serve(app).await, rx)
}

/// Service B: answers with the `traceparent` it received and its own context.
fn service_b() -> Router {
    Router::new()
        .route(
            "/b",
            get(|req: Request| async move {
                let received = req
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mine = req
                    .extensions()
                    .get::<TraceContext>()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                format!("{received} {mine}")
            }),
        )
        .layer(TraceContextLayer::new())
}

/// Service A: calls B, answers with its own context and B's answer.
fn service_a(b: SocketAddr, client: HttpClient) -> Router {
    Router::new()
        .route(
            "/a",
            get(move |req: Request| {
                let client = client.clone();
                async move {
                    let mine = req
                        .extensions()
                        .get::<TraceContext>()
                        .map(|c| c.to_string())
                        .unwrap_or_default();
                    let call = http::Request::get(format!("http://{b}/b"))
                        .body(Full::new(Bytes::new()))
                        .expect("valid request");
                    let response = ServiceBuilder::new()
                        .layer(PropagateTraceContextLayer::new())
                        .service(client)
                        .oneshot(call)
                        .await
                        .expect("B answers");
                    let body = response.into_body().collect().await.expect("body");
                    format!("{mine} {}", String::from_utf8_lossy(&body.to_bytes()))
                }
            }),
        )
        .layer(TraceContextLayer::new())
}

fn parent_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).expect("a traceparent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http_with_the_w3c_ids() {
    let (collector, mut exported) = receiver().await;
    let otel = OtlpExporter::builder()
        .endpoint(format!("http://{collector}"))
        .service_name("msp-otel-test")
        .install()
        .expect("exporter installed");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel.layer()))
        .expect("first subscriber of this test binary");
    let otel = Arc::new(otel);

    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let b = serve(service_b()).await;
    let a = serve(service_a(b, client.clone())).await;

    let mut call = http::Request::get(format!("http://{a}/a"))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    call.headers_mut().insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{TRACE}-{CALLER}-01")).expect("valid"),
    );
    let response = client.request(call).await.expect("A answers");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    let [a_ctx, b_received, b_ctx]: [&str; 3] = body
        .split(' ')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three traceparents");

    // Every span has ended before its service answered; flush, then wait
    // (bounded) for the receiver to have them all.
    let mut spans: Vec<(String, Span)> = Vec::new();
    for _ in 0..10 {
        let flusher = Arc::clone(&otel);
        tokio::task::spawn_blocking(move || flusher.force_flush())
            .await
            .expect("flush ran")
            .expect("flushed");
        while let Ok(span) = exported.try_recv() {
            spans.push(span);
        }
        let ours = |kind: SpanKind| spans.iter().filter(|(_, s)| s.kind == kind as i32).count();
        if ours(SpanKind::Server) >= 2 && ours(SpanKind::Client) >= 1 {
            break;
        }
        if let Ok(Some(span)) = tokio::time::timeout(Duration::from_secs(5), exported.recv()).await
        {
            spans.push(span);
        }
    }

    for (service, span) in &spans {
        assert_eq!(service, "msp-otel-test");
        assert_eq!(
            hex(&span.trace_id),
            TRACE,
            "span {:?} left the trace",
            span.name
        );
    }
    let find = |kind: SpanKind, parent: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.kind == kind as i32 && hex(&s.parent_span_id) == parent)
            .unwrap_or_else(|| panic!("no {kind:?} span with parent {parent} in {spans:#?}"))
    };

    // Hop 1: the caller → A's server span, whose id A propagated as its own.
    let a_server = find(SpanKind::Server, CALLER);
    assert_eq!(hex(&a_server.span_id), parent_id(a_ctx));
    assert_eq!(a_server.name, "GET");
    // A's outgoing call: a client span, child of A's server span, whose id
    // is the parent-id B received.
    let a_client = find(SpanKind::Client, &hex(&a_server.span_id));
    assert_eq!(hex(&a_client.span_id), parent_id(b_received));
    assert!(b_received.starts_with(&format!("00-{TRACE}-")));
    // Hop 2: B's server span is the child of A's client span.
    let b_server = find(SpanKind::Server, &hex(&a_client.span_id));
    assert_eq!(hex(&b_server.span_id), parent_id(b_ctx));
    assert!(b_ctx.starts_with(&format!("00-{TRACE}-")));

    Arc::try_unwrap(otel)
        .expect("no other owner")
        .shutdown()
        .expect("clean shutdown");
}

#[test]
fn the_endpoint_must_be_a_plain_http_url() {
    use msp_core::observe::otel::OtelError;
    for bad in [
        "https://collector:4318",
        "collector:4318",
        "not a url",
        "http://",
    ] {
        let err = OtlpExporter::builder().endpoint(bad).install().err();
        assert!(
            matches!(err, Some(OtelError::InvalidEndpoint { .. })),
            "{bad}: {err:?}"
        );
    }
    for good in [
        "http://127.0.0.1:4318",
        "http://127.0.0.1:4318/",
        "http://collector:4318/v1/traces",
    ] {
        let guard = OtlpExporter::builder()
            .endpoint(good)
            .install()
            .expect(good);
        guard.shutdown().expect("nothing to export");
    }
}
