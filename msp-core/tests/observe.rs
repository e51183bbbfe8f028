//! The observe layers: W3C trace context across real layers, RED metrics
//! through a debugging recorder, and the combined stack.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use msp_core::observe::trace_context::{self, TraceState};
use msp_core::observe::{
    self, MetricsLayer, PropagateTraceContextLayer, TraceContext, TraceContextLayer,
};
use msp_core::{Outcome, classify::Classify};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

// ---------------------------------------------------------------- trace context

/// What the downstream service saw.
#[derive(Clone, Debug)]
struct Seen {
    ctx: TraceContext,
    traceparent: Option<String>,
    tracestate: Option<String>,
    current: Option<TraceContext>,
}

/// A server stack (TraceContextLayer) around a handler reporting what it saw.
fn downstream()
-> impl Service<Request<()>, Response = Response<Seen>, Error = Infallible, Future: Send> + Clone {
    ServiceBuilder::new()
        .layer(TraceContextLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let seen = Seen {
                ctx: req
                    .extensions()
                    .get::<TraceContext>()
                    .cloned()
                    .expect("the layer always inserts a context"),
                traceparent: header("traceparent"),
                tracestate: header("tracestate"),
                current: trace_context::current(),
            };
            Ok::<_, Infallible>(Response::new(seen))
        }))
}

async fn call_with_headers(headers: &[(&str, &[u8])]) -> Seen {
    let mut req = Request::new(());
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_bytes(value).expect("valid header bytes"),
        );
    }
    downstream()
        .oneshot(req)
        .await
        .expect("infallible")
        .into_body()
}

#[tokio::test]
async fn traceparent_round_trip_through_client_and_server_layers() {
    let caller: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("valid");
    let caller = caller.with_state(TraceState::parse("congo=t61rcWkgMzE").expect("valid"));

    let client = ServiceBuilder::new()
        .layer(PropagateTraceContextLayer::new())
        .service(downstream());
    let mut req = Request::new(());
    req.extensions_mut().insert(caller.clone());
    let seen = client.oneshot(req).await.expect("infallible").into_body();

    // Same trace, carried through the headers.
    assert_eq!(seen.ctx.trace_id(), caller.trace_id());
    assert_eq!(seen.ctx.state().as_str(), "congo=t61rcWkgMzE");
    assert_eq!(seen.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
    // The client made a child span for the call: the header's parent id is
    // neither the caller's span nor the server's.
    let sent: TraceContext = seen
        .traceparent
        .as_deref()
        .expect("traceparent injected")
        .parse()
        .expect("well-formed traceparent");
    assert_eq!(sent.trace_id(), caller.trace_id());
    assert_ne!(sent.span_id(), caller.span_id());
    assert_eq!(seen.ctx.parent_id(), Some(sent.span_id()));
    assert_ne!(seen.ctx.span_id(), sent.span_id());
    assert!(seen.ctx.flags().is_sampled());
    // The handler runs with the context as the task's current one.
    assert_eq!(seen.current.as_ref(), Some(&seen.ctx));
}

#[tokio::test]
async fn handler_calls_propagate_the_current_context_over_three_hops() {
    // A middle service whose handler calls the downstream through a client
    // stack, relying on the task-local context (no extension on the
    // outgoing request).
    let middle = ServiceBuilder::new()
        .layer(TraceContextLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            let mine = req.extensions().get::<TraceContext>().cloned();
            let client = ServiceBuilder::new()
                .layer(PropagateTraceContextLayer::new())
                .service(downstream());
            let seen = client
                .oneshot(Request::new(()))
                .await
                .expect("infallible")
                .into_body();
            Ok::<_, Infallible>(Response::new((mine, seen)))
        }));

    let mut req = Request::new(());
    req.headers_mut().insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
    );
    let (mine, seen) = middle.oneshot(req).await.expect("infallible").into_body();
    let mine = mine.expect("middle context");
    assert_eq!(
        mine.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(
        mine.parent_id().map(|p| p.to_string()).as_deref(),
        Some("b7ad6b7169203331")
    );
    assert!(!mine.flags().is_sampled(), "flags carried as received");
    assert_eq!(seen.ctx.trace_id(), mine.trace_id());
    let sent: TraceContext = seen
        .traceparent
        .as_deref()
        .expect("injected from the task-local context")
        .parse()
        .expect("valid");
    assert_eq!(sent.trace_id(), mine.trace_id());
    assert_ne!(sent.span_id(), mine.span_id());
}

#[tokio::test]
async fn malformed_traceparent_is_ignored_and_starts_a_new_trace() {
    let malformed: &[&[u8]] = &[
        b"",
        b"garbage",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        b"00+4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7+01",
        b"00-4bf92f3577b34da6a3ce929d0e0e47\xff\xfe-00f067aa0ba902b7-01",
    ];
    for value in malformed {
        let seen = call_with_headers(&[("traceparent", value), ("tracestate", b"congo=1")]).await;
        assert_ne!(
            seen.ctx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{value:?} was accepted"
        );
        assert_eq!(
            seen.ctx.parent_id(),
            None,
            "{value:?}: a new root is started"
        );
        assert!(
            seen.ctx.state().is_empty(),
            "{value:?}: tracestate without a valid traceparent is dropped"
        );
    }
}

#[tokio::test]
async fn two_traceparent_headers_are_ambiguous_and_ignored() {
    let seen = call_with_headers(&[
        (
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (
            "traceparent",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ])
    .await;
    assert_eq!(seen.ctx.parent_id(), None);
}

#[tokio::test]
async fn malformed_tracestate_is_dropped_but_traceparent_kept() {
    let seen = call_with_headers(&[
        (
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", b"congo=1"),
        ("tracestate", b"INVALID KEY=2"),
    ])
    .await;
    assert_eq!(
        seen.ctx.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(seen.ctx.state().is_empty());

    // Several valid lines are joined.
    let seen = call_with_headers(&[
        (
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", b"congo=1"),
        ("tracestate", b"rojo=2"),
    ])
    .await;
    assert_eq!(seen.ctx.state().as_str(), "congo=1,rojo=2");
}

#[tokio::test]
async fn client_without_context_sends_nothing_unless_asked() {
    let client = ServiceBuilder::new()
        .layer(PropagateTraceContextLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.headers().contains_key("traceparent")))
        }));
    assert!(
        !client
            .clone()
            .oneshot(Request::new(()))
            .await
            .expect("ok")
            .into_body()
    );
    let rooted = ServiceBuilder::new()
        .layer(PropagateTraceContextLayer::new().new_root_when_missing(true))
        .service(client.into_inner());
    assert!(
        rooted
            .oneshot(Request::new(()))
            .await
            .expect("ok")
            .into_body()
    );
}

// ---------------------------------------------------------------- metrics

/// Sums the deltas of successive snapshots (the debugging recorder resets
/// counters and gauges when it snapshots).
struct Recorded {
    snapshotter: Snapshotter,
    values: HashMap<(String, Vec<(String, String)>), Value>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

impl Recorded {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Recorded {
            snapshotter: recorder.snapshotter(),
            values: HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let entry = (key.key().name().to_owned(), labels);
            let slot = self.values.entry(entry);
            match value {
                DebugValue::Counter(n) => {
                    let v = slot.or_insert(Value::Counter(0));
                    if let Value::Counter(c) = v {
                        *c += n;
                    }
                }
                DebugValue::Gauge(g) => {
                    let v = slot.or_insert(Value::Gauge(0.0));
                    if let Value::Gauge(c) = v {
                        *c += g.into_inner();
                    }
                }
                DebugValue::Histogram(xs) => {
                    let v = slot.or_insert(Value::Histogram(Vec::new()));
                    if let Value::Histogram(h) = v {
                        h.extend(xs.into_iter().map(|x| x.into_inner()));
                    }
                }
            }
        }
    }

    /// The value of `name` whose labels include all of `labels`; panics if
    /// several series match.
    fn get(&mut self, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
        self.refresh();
        let matching: Vec<&Value> = self
            .values
            .iter()
            .filter(|((n, ls), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
            .collect();
        assert!(
            matching.len() <= 1,
            "ambiguous series for {name} {labels:?}"
        );
        matching.first().map(|v| (*v).clone())
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(Value::Counter(n)) => n,
            None => 0,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            Some(Value::Gauge(n)) => n,
            None => 0.0,
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, labels) {
            Some(Value::Histogram(xs)) => xs,
            None => Vec::new(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }
}

const REQUESTS: &str = "msp_http_requests_total";
const ERRORS: &str = "msp_http_errors_total";
const DURATION: &str = "msp_http_request_duration_seconds";
const IN_FLIGHT: &str = "msp_http_requests_in_flight";

/// A service answering the status in the path `/status/{code}` after
/// sleeping the milliseconds in the `x-delay-ms` header.
fn status_service()
-> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = std::io::Error> + Clone {
    service_fn(|req: Request<()>| async move {
        let delay = req
            .headers()
            .get("x-delay-ms")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let code = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(200);
        if code == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        }
        let mut res = Response::new(Full::new(Bytes::from_static(b"body")));
        *res.status_mut() = StatusCode::from_u16(code).expect("valid status in test");
        Ok(res)
    })
}

async fn send<S, B>(svc: &mut S, path: &str) -> Result<(), S::Error>
where
    S: Service<Request<()>, Response = Response<B>>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = svc
        .ready()
        .await?
        .call(Request::get(path).body(()).expect("valid request"))
        .await?;
    res.into_body().collect().await.expect("body reads");
    Ok(())
}

#[tokio::test]
async fn counts_requests_and_errors_by_status_class() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);

    let mut svc = MetricsLayer::new("orders").layer(status_service());
    for path in [
        "/status/200",
        "/status/201",
        "/status/404",
        "/status/503",
        "/status/500",
    ] {
        send(&mut svc, path).await.expect("no transport error");
    }
    assert!(send(&mut svc, "/status/0").await.is_err());

    let svc_label = ("service", "orders");
    // Numeric segments collapse: both 2xx requests share one series.
    assert_eq!(
        m.counter(REQUESTS, &[svc_label, ("status_class", "2xx")]),
        2
    );
    assert_eq!(
        m.counter(
            REQUESTS,
            &[
                ("route", "/status/{id}"),
                ("status_class", "2xx"),
                ("method", "GET")
            ]
        ),
        2
    );
    assert_eq!(m.counter(REQUESTS, &[("status_class", "4xx")]), 1);
    assert_eq!(m.counter(REQUESTS, &[("status_class", "5xx")]), 2);
    assert_eq!(
        m.counter(
            REQUESTS,
            &[("status_class", "error"), ("route", "/status/{id}")]
        ),
        1
    );
    // 5xx and the transport error are failures; 2xx and 4xx are not.
    assert_eq!(m.counter(ERRORS, &[("status_class", "5xx")]), 2);
    assert_eq!(m.counter(ERRORS, &[("status_class", "error")]), 1);
    assert_eq!(m.counter(ERRORS, &[("status_class", "4xx")]), 0);
    assert_eq!(m.counter(ERRORS, &[("status_class", "2xx")]), 0);
    assert_eq!(
        m.histogram(DURATION, &[svc_label, ("status_class", "2xx")])
            .len(),
        2
    );
    assert_eq!(m.gauge(IN_FLIGHT, &[svc_label]), 0.0);
}

#[tokio::test(start_paused = true)]
async fn duration_runs_until_the_body_ends() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);

    let mut svc = MetricsLayer::new("orders").layer(status_service());
    let req = Request::get("/status/200")
        .header("x-delay-ms", "250")
        .body(())
        .expect("valid");
    let res = svc
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("ok");

    // Head received: counted, still in flight, no duration yet.
    assert_eq!(m.counter(REQUESTS, &[("status_class", "2xx")]), 1);
    assert_eq!(m.gauge(IN_FLIGHT, &[("service", "orders")]), 1.0);
    assert!(m.histogram(DURATION, &[]).is_empty());

    tokio::time::sleep(Duration::from_millis(750)).await; // a slow reader
    res.into_body().collect().await.expect("body");
    assert_eq!(m.histogram(DURATION, &[("status_class", "2xx")]), vec![1.0]);
    assert_eq!(m.gauge(IN_FLIGHT, &[("service", "orders")]), 0.0);
}

/// A service whose response never comes.
#[derive(Clone)]
struct Never;

impl Service<Request<()>> for Never {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Pending<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::pending()
    }
}

#[tokio::test]
async fn in_flight_returns_to_zero_when_the_future_is_dropped() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);

    let mut svc = MetricsLayer::new("orders").layer(Never);
    let mut fut = Box::pin(svc.call(Request::get("/slow").body(()).expect("valid")));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let labels = [("service", "orders"), ("route", "/slow"), ("method", "GET")];
    assert_eq!(m.gauge(IN_FLIGHT, &labels), 1.0);

    drop(fut); // the client went away
    assert_eq!(m.gauge(IN_FLIGHT, &labels), 0.0);
    assert_eq!(
        m.counter(REQUESTS, &[]),
        0,
        "an abandoned request is not counted"
    );
    assert!(m.histogram(DURATION, &[]).is_empty());

    // A response whose body is dropped unread leaves the gauge too.
    let mut svc = MetricsLayer::new("orders").layer(status_service());
    let res = svc
        .ready()
        .await
        .expect("ready")
        .call(Request::get("/status/200").body(()).expect("valid"))
        .await
        .expect("ok");
    assert_eq!(m.gauge(IN_FLIGHT, &[("route", "/status/{id}")]), 1.0);
    drop(res);
    assert_eq!(m.gauge(IN_FLIGHT, &[("route", "/status/{id}")]), 0.0);
    assert_eq!(m.histogram(DURATION, &[("route", "/status/{id}")]).len(), 1);
}

#[tokio::test]
async fn classifier_and_route_are_configurable() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);

    // 429 counts as an error; 503 is ignored (not an error).
    let classifier = |r: Result<&Response<Full<Bytes>>, &std::io::Error>| match r {
        Ok(res) if res.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::Failure,
        Ok(res) if res.status() == StatusCode::SERVICE_UNAVAILABLE => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    assert_eq!(
        classifier.classify(Ok(&Response::new(Full::new(Bytes::new())))),
        Outcome::Success
    );
    let mut svc = MetricsLayer::new("orders")
        .classifier(classifier)
        .route_fn(|uri, _| format!("custom:{}", uri.path().len()))
        .layer(status_service());
    send(&mut svc, "/status/429").await.expect("ok");
    send(&mut svc, "/status/503").await.expect("ok");
    assert_eq!(
        m.counter(ERRORS, &[("status_class", "4xx"), ("route", "custom:11")]),
        1
    );
    assert_eq!(m.counter(ERRORS, &[("status_class", "5xx")]), 0);
    assert_eq!(m.counter(REQUESTS, &[("status_class", "5xx")]), 1);
}

#[tokio::test]
async fn extension_methods_do_not_create_label_values() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut svc = MetricsLayer::new("orders").layer(status_service());
    let req = Request::builder()
        .method(http::Method::from_bytes(b"BREW").expect("valid method"))
        .uri("/status/200")
        .body(())
        .expect("valid");
    let res = svc
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("ok");
    drop(res);
    assert_eq!(m.counter(REQUESTS, &[("method", "other")]), 1);
}

// ---------------------------------------------------------------- combined stack

#[tokio::test]
async fn observe_layer_stacks_request_id_trace_context_and_metrics() {
    let recorder = DebuggingRecorder::new();
    let mut m = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);

    let svc =
        observe::layer("catalog").layer(service_fn(|req: Request<Empty<Bytes>>| async move {
            let ctx = req.extensions().get::<TraceContext>().cloned();
            let id = req.headers().get("x-request-id").cloned();
            let body = format!(
                "{}|{}",
                ctx.map(|c| c.trace_id().to_string()).unwrap_or_default(),
                id.and_then(|v| v.to_str().ok().map(str::to_owned))
                    .unwrap_or_default()
            );
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }));
    let req = Request::get("/items/12")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Empty::<Bytes>::new())
        .expect("valid");
    let res = svc.oneshot(req).await.expect("infallible");
    let response_id = res
        .headers()
        .get("x-request-id")
        .expect("request id propagated to the response")
        .clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let body = String::from_utf8(body.to_vec()).expect("utf-8");
    let (trace_id, request_id) = body.split_once('|').expect("two parts");
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(request_id.len(), 36, "a UUID was generated: {request_id}");
    assert_eq!(response_id.to_str().expect("ascii"), request_id);
    assert_eq!(
        m.counter(
            REQUESTS,
            &[
                ("service", "catalog"),
                ("route", "/items/{id}"),
                ("status_class", "2xx")
            ]
        ),
        1
    );
}
