//! Layers together: the builder shortcuts, an overall deadline over
//! retries, a breaker inside a retry, errors to responses, and stacks used
//! from axum handlers.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use msp_core::backoff::Backoff;
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use msp_resilience::rate_limit::{Quota, RateLimitLayer, RateLimiter};
use msp_resilience::retry::ReplayBody;
use msp_resilience::{CircuitOpen, Elapsed, ResilienceBuilderExt, RetryLayer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

fn is_error(_: &u32, res: Result<&u32, &BoxError>) -> bool {
    res.is_err()
}

fn backoff(ms: u64) -> Backoff {
    Backoff::constant(Duration::from_millis(ms)).expect("backoff")
}

#[tokio::test(start_paused = true)]
async fn five_layers_from_the_builder_shortcuts() {
    let svc = ServiceBuilder::new()
        .msp_timeout(Duration::from_secs(1))
        .msp_retry(RetryLayer::new(is_error).backoff(backoff(1)))
        .msp_circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
        .msp_rate_limit(RateLimitLayer::new(RateLimiter::new(
            Quota::per_second(100).expect("quota"),
        )))
        .msp_bulkhead(BulkheadLayer::new(
            BulkheadConfig::builder()
                .max_concurrent(4)
                .build()
                .expect("config"),
        ))
        .service(service_fn(|n: u32| async move {
            Ok::<_, std::io::Error>(n + 1)
        }));
    for n in 0..10 {
        assert_eq!(svc.clone().oneshot(n).await.expect("ok"), n + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn the_overall_deadline_bounds_all_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let svc = ServiceBuilder::new()
        .msp_timeout(Duration::from_millis(200))
        .msp_retry(
            RetryLayer::new(is_error)
                .max_attempts(10)
                .backoff(backoff(50))
                .no_budget(),
        )
        .service(service_fn(move |_: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Err::<u32, _>(std::io::Error::other("down"))
            }
        }));
    let start = Instant::now();
    let err = svc.oneshot(1).await.expect_err("deadline");
    assert!(err.is::<Elapsed>(), "{err:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    // Attempts start at 0, 80 and 160 ms.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_stops_retries_and_answers_503() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let breaker = CircuitBreakerConfig::builder()
        .count_window(10)
        .minimum_calls(2)
        .failure_rate(50.0)
        .open_duration(Duration::from_secs(30))
        .build()
        .expect("config");
    let svc = ServiceBuilder::new()
        .msp_http_errors()
        .msp_retry(
            RetryLayer::idempotent_http()
                .max_attempts(5)
                .backoff(backoff(1))
                .no_budget(),
        )
        .msp_circuit_breaker(CircuitBreakerLayer::new(breaker).classify_http_status())
        .service(service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok::<_, std::io::Error>(res)
            }
        }));

    // Two 500s open the breaker; the third attempt is rejected locally and
    // not retried further.
    let res = svc
        .clone()
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let res = svc
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "open circuit: no call");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_surfaces_through_the_closure_policy_unchanged() {
    let breaker = CircuitBreakerConfig::builder()
        .count_window(4)
        .minimum_calls(1)
        .failure_rate(100.0)
        .build()
        .expect("config");
    let svc = ServiceBuilder::new()
        .msp_retry(
            RetryLayer::new(is_error)
                .max_attempts(2)
                .backoff(backoff(1))
                .no_budget(),
        )
        .msp_circuit_breaker(CircuitBreakerLayer::new(breaker))
        .service(service_fn(|_: u32| async {
            Err::<u32, _>(std::io::Error::other("down"))
        }));
    let err = svc.oneshot(1).await.expect_err("fails");
    assert!(
        err.is::<CircuitOpen>(),
        "the second attempt met the open breaker: {err:?}"
    );
}

#[tokio::test]
async fn stacks_are_usable_from_axum_handlers() {
    // Compiles only if the stack's future is `Send` inside a handler.
    let client = ServiceBuilder::new()
        .msp_timeout(Duration::from_secs(1))
        .msp_retry(RetryLayer::new(is_error).backoff(backoff(1)))
        .msp_circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
        .service(service_fn(|n: u32| async move {
            Ok::<_, std::io::Error>(n * 2)
        }));
    let app: Router = Router::new()
        .route(
            "/",
            get(move || {
                let client = client.clone();
                async move {
                    client
                        .oneshot(21)
                        .await
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .msp_http_errors()
                .msp_timeout(Duration::from_secs(2)),
        );
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "42");
}
