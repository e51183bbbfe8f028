//! The health registry and the `/health/live` + `/health/ready` service.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use msp_core::health::{Check, CheckResult, HealthRegistry, HealthService, Status};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

async fn probe(svc: &HealthService, method: Method, path: &str) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .expect("valid request");
    let res = svc.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("full body")
        .to_bytes();
    (status, body)
}

async fn get(svc: &HealthService, path: &str) -> (StatusCode, Value) {
    let (status, body) = probe(svc, Method::GET, path).await;
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

fn flag_check(name: &str, flag: &Arc<AtomicBool>) -> Check {
    let flag = flag.clone();
    Check::new(name, move || {
        let up = flag.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("connection refused")
            }
        }
    })
}

#[tokio::test]
async fn ready_goes_503_when_a_check_fails_and_back() {
    let db = Arc::new(AtomicBool::new(true));
    let health = HealthRegistry::new();
    health.register(flag_check("db", &db));
    health.register(Check::new("cache", || async { true }));
    let svc = health.service();

    let (status, body) = get(&svc, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "up");
    assert_eq!(body["checks"]["db"]["status"], "up");
    assert_eq!(body["checks"]["db"]["message"], Value::Null);
    assert!(body["checks"]["db"]["duration_ms"].is_u64());
    assert_eq!(body["checks"]["cache"]["status"], "up");

    db.store(false, Ordering::SeqCst);
    let (status, body) = get(&svc, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "down");
    assert_eq!(body["checks"]["db"]["status"], "down");
    assert_eq!(body["checks"]["db"]["message"], "connection refused");
    assert_eq!(body["checks"]["cache"]["status"], "up");
    // Liveness runs the same check (it counts for both probes).
    assert_eq!(
        get(&svc, "/health/live").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    db.store(true, Ordering::SeqCst);
    let (status, body) = get(&svc, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "up");
}

#[tokio::test]
async fn probes_only_run_their_checks() {
    let down = Arc::new(AtomicBool::new(false));
    let health = HealthRegistry::new();
    health.register(flag_check("db", &down).readiness_only());
    health.register(flag_check("deadlock", &Arc::new(AtomicBool::new(true))).liveness_only());
    let svc = health.service();

    let (status, body) = get(&svc, "/health/live").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a readiness check does not fail liveness"
    );
    assert!(body["checks"].get("db").is_none());
    assert_eq!(body["checks"]["deadlock"]["status"], "up");

    let (status, body) = get(&svc, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["checks"].get("deadlock").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_check_that_times_out_is_down() {
    let health = HealthRegistry::new();
    health.register(
        Check::new("slow", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            true
        })
        .timeout(Duration::from_secs(2)),
    );
    let start = tokio::time::Instant::now();
    let (status, body) = get(&health.service(), "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["slow"]["status"], "down");
    assert!(
        body["checks"]["slow"]["message"]
            .as_str()
            .expect("a message")
            .contains("timed out"),
        "{body}"
    );
    assert_eq!(body["checks"]["slow"]["duration_ms"], 2000);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn a_panicking_check_is_down_not_fatal() {
    let health = HealthRegistry::new();
    health.register(Check::new("buggy", || async {
        if true {
            panic!("bug in check");
        }
        true
    }));
    let (status, body) = get(&health.service(), "/health/live").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["buggy"]["message"], "check panicked");
}

#[tokio::test(start_paused = true)]
async fn cached_results_are_reused_until_max_age() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let health = HealthRegistry::new();
    health.register(
        Check::new("expensive", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { CheckResult::up().with_message("fine") }
        })
        .cache(Duration::from_secs(10)),
    );
    let svc = health.service();
    let (_, body) = get(&svc, "/health/ready").await;
    assert_eq!(body["checks"]["expensive"]["message"], "fine");
    get(&svc, "/health/ready").await;
    get(&svc, "/health/live").await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(11)).await;
    get(&svc, "/health/ready").await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn set_ready_false_fails_readiness_only() {
    let health = HealthRegistry::new();
    health.register(Check::new("db", || async { true }));
    let svc = health.service();
    health.set_ready(false);

    let (status, body) = get(&svc, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["ready"]["status"], "down");
    assert_eq!(body["checks"]["db"]["status"], "up");
    assert_eq!(get(&svc, "/health/live").await.0, StatusCode::OK);

    health.set_ready(true);
    assert_eq!(get(&svc, "/health/ready").await.0, StatusCode::OK);
    assert_eq!(health.readiness().await.status, Status::Up);
}

#[tokio::test]
async fn register_replaces_and_deregister_removes() {
    let health = HealthRegistry::new();
    health.register(Check::new("db", || async { false }));
    health.register(Check::new("db", || async { true }));
    assert_eq!(health.readiness().await.status, Status::Up);
    assert_eq!(health.readiness().await.checks.len(), 1);
    assert!(health.deregister("db"));
    assert!(!health.deregister("db"));
    assert!(health.readiness().await.checks.is_empty());
}

#[tokio::test]
async fn other_paths_and_methods() {
    let health = HealthRegistry::new();
    let svc = health.service();
    assert_eq!(
        probe(&svc, Method::GET, "/health").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(probe(&svc, Method::GET, "/").await.0, StatusCode::NOT_FOUND);
    let req = Request::post("/health/ready").body(()).expect("valid");
    let res = svc.clone().oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET, HEAD");

    let (status, body) = probe(&svc, Method::HEAD, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());

    let custom = svc.with_paths("/livez", "/readyz");
    assert_eq!(
        probe(&custom, Method::GET, "/readyz").await.0,
        StatusCode::OK
    );
    assert_eq!(
        probe(&custom, Method::GET, "/health/ready").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn serves_over_axum_route_service() {
    let db = Arc::new(AtomicBool::new(true));
    let health = HealthRegistry::new();
    health.register(flag_check("db", &db));
    let app: axum::Router = axum::Router::new()
        .route_service("/health/live", health.service())
        .route_service("/health/ready", health.service());
    let ready = || {
        Request::get("/health/ready")
            .body(axum::body::Body::empty())
            .expect("valid")
    };
    let res = app.clone().oneshot(ready()).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    db.store(false, Ordering::SeqCst);
    let res = app.oneshot(ready()).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}
