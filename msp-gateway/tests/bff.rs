//! Aggregate endpoints over real axum backends on loopback: merging,
//! partial failures, required failures, sequential steps, collections,
//! cancellation, deadlines, metrics, and use in a user's own axum service.
//! Through the Gateway: tests/bff_gateway.rs.

mod bff_common;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bff_common::{closed_port, get as request, j, json, serve, shop};
use msp_gateway::bff::{Aggregate, AggregateError, BackendConfig, PartialMarker};
use msp_gateway::proxy::ProxyClient;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

fn backend(name: &str, addr: SocketAddr, path: &str) -> BackendConfig {
    BackendConfig::new(name, format!("http://{addr}{path}"))
}

#[tokio::test]
async fn three_backends_merge_into_one_json() {
    let addr = shop().await;
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .backend(
            backend("user", addr, "/users/{id}")
                .required()
                .deny(["password_hash"])
                .rename("email", "contact"),
        )
        .backend(backend("orders", addr, "/orders?user={id}").group("orders"))
        .backend(backend("reviews", addr, "/reviews/{id}").allow(["stars"]))
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = agg.oneshot(request("/users/42")).await.expect("test value");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(!res.headers().contains_key("x-partial"));
    assert_eq!(
        json(res).await,
        json!({
            "id": 42, "name": "Ada", "contact": "ada@example.com",
            "orders": [{"id": 1, "user": "42", "total": 10}],
            "stars": [5, 4],
        })
    );
}

#[tokio::test(start_paused = true)]
async fn an_optional_backend_past_its_timeout_gives_a_partial_response_within_the_deadline() {
    let addr = shop().await;
    let deadline = Duration::from_secs(10);
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .deadline(deadline)
        .backend(backend("user", addr, "/users/{id}").required())
        .backend(
            backend("reviews", addr, "/slow")
                .group("reviews")
                .timeout(Duration::from_millis(300)),
        )
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let started = Instant::now();
    let res = agg.oneshot(request("/users/1")).await.expect("test value");
    assert!(started.elapsed() < deadline);
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-partial"], "true");
    let body = json(res).await;
    assert_eq!(body["name"], "Ada");
    assert_eq!(
        body["_partial"],
        json!({"failed": ["reviews"], "reasons": {"reviews": "timeout"}})
    );
}

#[tokio::test]
async fn the_krakend_marker_is_configurable() {
    let addr = shop().await;
    let build = |slow: bool| {
        Aggregate::builder("k")
            .path("/users/{id}")
            .partial_marker(PartialMarker::KrakenD)
            .backend(backend("user", addr, "/users/{id}").required())
            .backend(
                backend(
                    "more",
                    addr,
                    if slow { "/missing" } else { "/reviews/{id}" },
                )
                .group("more"),
            )
            .client(ProxyClient::new())
            .build()
            .expect("test value")
    };
    let res = build(true)
        .oneshot(request("/users/1"))
        .await
        .expect("test value");
    assert_eq!(res.headers()["x-krakend-completed"], "false");
    assert_eq!(json(res).await["_partial"]["reasons"]["more"], "status");
    let res = build(false)
        .oneshot(request("/users/1"))
        .await
        .expect("test value");
    assert_eq!(res.headers()["x-krakend-completed"], "true");
    assert!(json(res).await.get("_partial").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_required_backend_timing_out_is_a_504() {
    let addr = shop().await;
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .backend(
            backend("user", addr, "/slow")
                .required()
                .timeout(Duration::from_millis(200)),
        )
        .backend(backend("reviews", addr, "/reviews/{id}"))
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = agg.oneshot(request("/users/1")).await.expect("test value");
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(json(res).await["code"], "backend_timeout");
}

#[tokio::test(start_paused = true)]
async fn the_endpoint_deadline_bounds_every_backend() {
    let addr = shop().await;
    let deadline = Duration::from_millis(700);
    // No backend timeout: only the endpoint's deadline stops the slow one.
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .deadline(deadline)
        .backend(backend("user", addr, "/slow").required())
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let started = Instant::now();
    let res = agg.oneshot(request("/users/1")).await.expect("test value");
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() >= deadline && started.elapsed() < deadline * 2);
}

#[tokio::test]
async fn a_required_backend_refusing_is_a_502_or_503_never_a_500() {
    let addr = shop().await;
    let closed = closed_port().await;
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .backend(backend("user", closed, "/users/{id}").required())
        .backend(backend("reviews", addr, "/reviews/{id}"))
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = agg.oneshot(request("/users/1")).await.expect("test value");
    assert!(
        res.status() == 502 || res.status() == 503,
        "status {}",
        res.status()
    );
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // An optional one refusing: 200 with the rest.
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .backend(backend("user", addr, "/users/{id}").required())
        .backend(backend("reviews", closed, "/reviews/{id}"))
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = agg.oneshot(request("/users/1")).await.expect("test value");
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["_partial"]["failed"], json!(["reviews"]));
}

#[tokio::test]
async fn a_required_backends_404_is_passed_on() {
    let addr = shop().await;
    let agg = Aggregate::builder("a")
        .path("/x")
        .backend(backend("user", addr, "/missing").required())
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = agg.oneshot(request("/x")).await.expect("test value");
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["code"], "backend_status");
}

#[tokio::test]
async fn sequential_steps_use_an_earlier_response() {
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|Path(id): Path<u32>| async move { j(json!({"id": id, "product_id": id * 10})) }),
        )
        .route(
            "/products/{id}",
            get(
                |Path(id): Path<u32>| async move { j(json!({"id": id, "name": format!("p{id}")})) },
            ),
        );
    let addr = serve(app).await;
    let agg = Aggregate::builder("order-details")
        .path("/orders/{id}")
        .backend(
            backend("order", addr, "/orders/{id}")
                .required()
                .group("order"),
        )
        .backend(backend("product", addr, "/products/{order.product_id}").group("product"))
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = agg.oneshot(request("/orders/7")).await.expect("test value");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"order": {"id": 7, "product_id": 70}, "product": {"id": 70, "name": "p70"}})
    );
}

/// Counts requests in flight and the most seen (`tx` carries the most
/// seen); requests are held until `cap` have been in flight together, so
/// a cap not respected shows as more and calls made one at a time never
/// release (the test times out).
#[derive(Clone)]
struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    tx: watch::Sender<usize>,
}

struct Leave(InFlight);
impl Drop for Leave {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_collection_fans_out_with_the_concurrency_cap_respected() {
    let cap = 3;
    let state = InFlight {
        now: Arc::new(AtomicUsize::new(0)),
        max: Arc::new(AtomicUsize::new(0)),
        tx: watch::Sender::new(0),
    };
    let s = state.clone();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async { j(json!({"item_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9]})) }),
        )
        .route(
            "/products/{id}",
            get(move |Path(id): Path<u32>| {
                let s = s.clone();
                async move {
                    let n = s.now.fetch_add(1, Ordering::SeqCst) + 1;
                    let max = s.max.fetch_max(n, Ordering::SeqCst).max(n);
                    s.tx.send_replace(max);
                    let _leave = Leave(s.clone());
                    let mut rx = s.tx.subscribe();
                    let _ = rx.wait_for(|max| *max >= cap).await;
                    j(json!({"id": id}))
                }
            }),
        );
    let addr = serve(app).await;
    let agg = Aggregate::builder("order-items")
        .path("/orders/{id}")
        .backend(
            backend("order", addr, "/orders/{id}")
                .required()
                .group("order"),
        )
        .backend(
            backend("items", addr, "/products/{order.item_ids[*]}")
                .required()
                .group("items")
                .concurrency(cap),
        )
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let res = tokio::time::timeout(Duration::from_secs(20), agg.oneshot(request("/orders/1")))
        .await
        .expect("the collection did not finish")
        .expect("test value");
    assert_eq!(
        res.status(),
        200,
        "max in flight {}",
        state.max.load(Ordering::SeqCst)
    );
    let body = json(res).await;
    let ids: Vec<u64> = body["items"]
        .as_array()
        .expect("test value")
        .iter()
        .map(|v| v["id"].as_u64().expect("test value"))
        .collect();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>());
    assert_eq!(state.max.load(Ordering::SeqCst), cap);
}

/// Counts handler futures dropped before they finished.
struct Cancelled(Arc<AtomicUsize>, Arc<Notify>);
impl Drop for Cancelled {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.notify_one();
    }
}

#[tokio::test]
async fn a_client_going_away_cancels_the_backend_calls() {
    let started = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (on_start, on_cancel) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let handler = {
        let (started, cancelled, on_start, on_cancel) = (
            started.clone(),
            cancelled.clone(),
            on_start.clone(),
            on_cancel.clone(),
        );
        move || {
            let (started, cancelled, on_start, on_cancel) = (
                started.clone(),
                cancelled.clone(),
                on_start.clone(),
                on_cancel.clone(),
            );
            async move {
                let _guard = Cancelled(cancelled, on_cancel);
                started.fetch_add(1, Ordering::SeqCst);
                on_start.notify_one();
                std::future::pending::<axum::response::Response>().await
            }
        }
    };
    let addr = serve(Router::new().route("/hang/{n}", get(handler))).await;
    let agg = Aggregate::builder("hang")
        .path("/x")
        .deadline(Duration::from_secs(3600))
        .backend(backend("a", addr, "/hang/1").required())
        .backend(backend("b", addr, "/hang/2"))
        .client(ProxyClient::new())
        .build()
        .expect("test value");
    let response = agg.oneshot(request("/x"));
    let both_started = async {
        while started.load(Ordering::SeqCst) < 2 {
            on_start.notified().await;
        }
    };
    tokio::select! {
        _ = response => panic!("the aggregate answered although its backends hang"),
        _ = both_started => {}
    }
    // The response future is dropped: the client went away.
    tokio::time::timeout(Duration::from_secs(20), async {
        while cancelled.load(Ordering::SeqCst) < 2 {
            on_cancel.notified().await;
        }
    })
    .await
    .expect("the backend calls were not cancelled");
}

#[tokio::test]
async fn invalid_settings_name_every_field() {
    let err = Aggregate::builder("a")
        .path("/orders/{id}")
        .backend(BackendConfig::new("x", "http://svc/p/{nope}"))
        .backend(BackendConfig::new("y", "http://svc/p/{x.id}").timeout(Duration::ZERO))
        .client(ProxyClient::new())
        .build()
        .expect_err("an error");
    let AggregateError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field()).collect();
    assert_eq!(fields, ["backends[0].url", "backends[1].timeout"]);
    let err = Aggregate::builder("a")
        .backend(BackendConfig::new("x", "http://svc/"))
        .build()
        .expect_err("an error");
    assert!(matches!(err, AggregateError::NoClient { .. }), "{err}");
}

#[tokio::test]
async fn a_users_own_service_aggregates_through_a_discovery_client() {
    use msp_core::Instance;
    use msp_discovery::client::DiscoveryClient;
    use msp_discovery::registry::MemoryRegistry;

    let addr = shop().await;
    let registry = MemoryRegistry::new();
    registry
        .insert(Instance::parse("user-service", &addr.to_string()).expect("instance"))
        .expect("registered");
    let client = DiscoveryClient::builder(registry).build::<msp_gateway::Body>();
    let build = |path: &str, user_service: &str| {
        Aggregate::builder("user-page")
            .path(path)
            .backend(
                BackendConfig::new("user", format!("http://{user_service}/users/{{id}}"))
                    .required()
                    .allow(["name"]),
            )
            .client(client.clone())
            .build()
            .expect("aggregate")
    };
    // Mounted in the user's own axum router.
    let app: Router = Router::new()
        .route_service("/users/{id}", build("/users/{id}", "user-service"))
        .route_service("/gone/{id}", build("/gone/{id}", "nobody"));
    let req = |path: &str| {
        http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let res = app
        .clone()
        .oneshot(req("/users/9"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, r#"{"name":"Ada"}"#);
    // A service with no instance: 503, not 500.
    let res = app.oneshot(req("/gone/9")).await.expect("infallible");
    assert_eq!(res.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_header_shortens_the_endpoint_deadline() {
    let addr = shop().await;
    let agg = Aggregate::builder("user-page")
        .path("/users/{id}")
        .deadline(Duration::from_secs(3600))
        .backend(backend("user", addr, "/slow").required())
        .client(ProxyClient::new())
        .build()
        .expect("aggregate");
    let mut req = request("/users/1");
    req.headers_mut().insert(
        msp_core::http::header::DEADLINE_MS,
        http::HeaderValue::from_static("250"),
    );
    let started = Instant::now();
    let res = agg.oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn metrics_count_requests_partials_and_backend_failures() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // Current-thread runtime: every task records into this thread's recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let addr = shop().await;
    let agg = Aggregate::builder("metered")
        .path("/users/{id}")
        .backend(backend("user", addr, "/users/{id}").required())
        .backend(backend("extra", addr, "/missing"))
        .client(ProxyClient::new())
        .build()
        .expect("aggregate");
    for _ in 0..2 {
        let res = agg
            .clone()
            .oneshot(request("/users/1"))
            .await
            .expect("infallible");
        assert_eq!(res.status(), 200);
    }
    let text = handle.render();
    for line in [
        r#"msp_bff_requests_total{aggregate="metered",outcome="partial"} 2"#,
        r#"msp_bff_partial_responses_total{aggregate="metered"} 2"#,
        r#"msp_bff_backend_failures_total{aggregate="metered",backend="extra",reason="status"} 2"#,
        r#"msp_bff_backend_duration_seconds_count{aggregate="metered",backend="user"} 2"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[test]
fn a_standalone_aggregate_refuses_auth_settings() {
    let mut config = msp_gateway::bff::AggregateConfig::new("a", "/a");
    config.backends.push(BackendConfig::new("x", "http://svc/"));
    config.auth_required = true;
    let err = msp_gateway::bff::AggregateBuilder::from_config(config)
        .client(ProxyClient::new())
        .build()
        .expect_err("auth is the gateway's");
    let AggregateError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problems[0].field(), "auth_required");
}
