//! A service's `retry:` (under `services:`): a failed attempt goes to the
//! balancer again, so an instance refusing connections costs no client
//! request; `POST` is retried only when the connection failed; the
//! service's retry budget bounds the retries.

mod common_gw;

use bytes::Bytes;
use common_gw::{BOUND, Http, backend, failing_backend, gateway};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_gateway::config::GatewayConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An address nothing listens on: connecting to it is refused.
async fn refusing_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// Answers `"{name} got {body}"` to any request; counts them.
async fn echo(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { format!("{name} got {body}") }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

async fn post(addr: SocketAddr, path: &str, body: &'static str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    let res = tokio::time::timeout(BOUND, client.request(req))
        .await
        .expect("answer in time")
        .expect("gateway answers");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Two instances, round robin, one of them refusing connections, and
/// `retry` under the service; `/plain/*` turns retries off for itself.
/// Eight requests make at most sixteen calls: below the default breaker's
/// twenty-call minimum, so what is seen is retries alone.
fn two_instances(dead: SocketAddr, live: SocketAddr) -> String {
    format!(
        r#"
routes:
  - path: "/s/*"
    service: s
  - path: "/plain/*"
    service: s
    retry: {{max_attempts: 1}}
services:
  s:
    instances: ["{dead}", "{live}"]
    balancer: round_robin
    retry:
      max_attempts: 2
      backoff: {{initial: 1ms, max_delay: 1ms}}
"#
    )
}

#[tokio::test]
async fn an_instance_refusing_connections_fails_no_get_with_retry_and_some_without() {
    let dead = refusing_addr().await;
    let live = backend("live").await;
    let (gw, addr) = gateway(&two_instances(dead, live.addr)).await;
    let http = Http::new(addr);
    let retries = || {
        let s = gw.upstreams().into_iter().find(|u| u.service == "s");
        s.expect("service s").retries
    };

    // The route without retries first (the default outlier detection
    // ejects an instance after 5 failures in a row): the dead instance's
    // turns fail with 503.
    let mut failed = 0;
    for i in 0..4 {
        let res = http.get(&format!("/plain/{i}")).await;
        if res.status == StatusCode::SERVICE_UNAVAILABLE {
            failed += 1;
        } else {
            assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        }
    }
    assert_eq!(
        failed, 2,
        "round robin: every other request to the dead one"
    );
    assert_eq!(retries(), 0, "no retry on /plain/*");

    // With the service's retry: nothing fails.
    for i in 0..8 {
        let res = http.get(&format!("/s/{i}")).await;
        assert_eq!(res.status, StatusCode::OK, "request {i}: {}", res.body);
        assert_eq!(res.body, format!("live GET /s/{i}"));
    }
    assert!(
        retries() >= 1,
        "round robin sent first attempts to the dead instance"
    );
    assert_eq!(live.hits(), 2 + 8, "each request answered once");
}

#[tokio::test]
async fn a_post_is_retried_with_its_body_when_the_connection_was_refused() {
    let dead = refusing_addr().await;
    let (live, hits) = echo("live").await;
    let (_gw, addr) = gateway(&two_instances(dead, live)).await;
    for i in 0..6 {
        let (status, body) = post(addr, "/s/orders", "one order").await;
        assert_eq!(status, StatusCode::OK, "post {i}: {body}");
        assert_eq!(body, "live got one order", "the body is replayed");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_post_an_instance_failed_is_not_retried_but_a_get_is() {
    let failing = failing_backend("failing").await;
    let live = backend("live").await;
    let (_gw, addr) = gateway(&two_instances(failing.addr, live.addr)).await;

    let mut errors = 0;
    for i in 0..6 {
        let (status, body) = post(addr, "/s/orders", "x").await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(body, "failing POST /s/orders");
            errors += 1;
        } else {
            assert_eq!(status, StatusCode::OK, "post {i}: {body}");
        }
    }
    assert!(
        errors >= 1,
        "round robin sent some POSTs to the failing instance"
    );
    assert_eq!(
        failing.hits(),
        errors,
        "every POST the failing instance received came back as its 500: none was sent again"
    );
    assert_eq!(live.hits(), 6 - errors);

    // The same instance's 500 on a GET is retried on the other one.
    let http = Http::new(addr);
    for i in 0..4 {
        let res = http.get(&format!("/s/{i}")).await;
        assert_eq!(res.status, StatusCode::OK, "get {i}: {}", res.body);
    }
}

/// Every call fails (one instance answering `500`) with the breaker off:
/// `budget` decides how many retries are sent.
fn all_failing(addr: SocketAddr, budget: &str) -> String {
    format!(
        r#"
routes:
  - path: "/a/*"
    service: s
    breaker: {{mode: disabled}}
  - path: "/b/*"
    service: s
services:
  s:
    instances: ["{addr}"]
    retry:
      max_attempts: 3
      backoff: {{initial: 1ms, max_delay: 1ms}}
      budget: {budget}
"#
    )
}

#[tokio::test]
async fn the_service_retry_budget_bounds_the_retries_of_all_its_routes() {
    // 10 % of the requests, no per-second floor: one retry per ten
    // requests, shared by both routes.
    let failing = failing_backend("failing").await;
    let yaml = all_failing(failing.addr, "{percent: 10.0, min_per_second: 0, ttl: 60s}");
    let (gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    for i in 0..40 {
        let route = if i % 2 == 0 { "a" } else { "b" };
        let res = http.get(&format!("/{route}/{i}")).await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let retries = gw.upstreams()[0].retries;
    assert!(
        (1..=4).contains(&retries),
        "40 requests pay for at most 4 retries, not {retries}"
    );
    assert_eq!(failing.hits() as u64, 40 + retries);

    // Without a budget, max_attempts alone bounds them: 3 calls each.
    let failing = failing_backend("failing").await;
    let (gw, addr) = gateway(&all_failing(failing.addr, "null")).await;
    let http = Http::new(addr);
    for i in 0..10 {
        assert_eq!(
            http.get(&format!("/a/{i}")).await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(failing.hits(), 30);
    assert_eq!(gw.upstreams()[0].retries, 20);
}

#[test]
fn invalid_service_retry_settings_name_the_service_field_and_line() {
    let err = GatewayConfig::from_yaml(
        "services:\n  s:\n    instances: [\"127.0.0.1:1\"]\n    retry: {max_attempts: 0}\n",
        "gw.yaml",
    )
    .expect_err("zero attempts");
    let text = err.to_string();
    assert!(text.starts_with("gw.yaml:4"), "{text}");
    assert!(text.contains("max_attempts"), "{text}");

    let err = GatewayConfig::from_yaml(
        "services:\n  s:\n    connect_timeout: 1s\n    retry:\n      per_try_timeout: 500ms\n",
        "gw.yaml",
    )
    .expect_err("a try shorter than a connect");
    let text = err.to_string();
    assert!(text.contains("services.s.retry.per_try_timeout"), "{text}");
    assert!(text.contains("connect_timeout"), "{text}");
    assert!(text.starts_with("gw.yaml:5"), "{text}");

    let ok = GatewayConfig::from_yaml(
        "services:\n  s:\n    connect_timeout: 100ms\n    retry: {per_try_timeout: 2s}\n",
        "gw.yaml",
    );
    assert!(ok.is_ok(), "{ok:?}");
}
