//! Fallback: values, services, and when they run.

use http::{Response, StatusCode};
use msp_core::classify::HttpClassifier;
use msp_resilience::bulkhead::error::BulkheadFull;
use msp_resilience::circuit_breaker::error::CircuitOpen;
use msp_resilience::fallback::{Failed, FallbackLayer};
use msp_resilience::rate_limit::error::RateLimited;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[derive(Debug, thiserror::Error)]
#[error("primary failed")]
struct PrimaryFailed;

#[tokio::test]
async fn value_fallback_answers_on_error() {
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::value(
            |failed: Failed<String>| match failed {
                Failed::Error(e) => format!("fallback after: {e}"),
                Failed::Response(r) => r,
            },
        ))
        .service(service_fn(|_: ()| async {
            Err::<String, _>(PrimaryFailed)
        }));
    assert_eq!(
        svc.oneshot(()).await.expect("fallback"),
        "fallback after: primary failed"
    );
}

#[tokio::test]
async fn successful_calls_do_not_fall_back() {
    let used = Arc::new(AtomicUsize::new(0));
    let counter = used.clone();
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::value(move |_: Failed<u32>| {
            counter.fetch_add(1, Ordering::SeqCst);
            0
        }))
        .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) }));
    assert_eq!(svc.oneshot(1).await.expect("primary"), 2);
    assert_eq!(used.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn service_fallback_gets_the_same_request() {
    let primary = service_fn(|_: String| async { Err::<String, BoxError>("down".into()) });
    let secondary =
        service_fn(|req: String| async move { Ok::<_, BoxError>(format!("secondary:{req}")) });
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::service(secondary))
        .service(primary);
    assert_eq!(
        svc.oneshot("order-7".into()).await.expect("fallback"),
        "secondary:order-7"
    );
}

#[tokio::test]
async fn service_fallback_errors_are_returned() {
    let primary = service_fn(|_: u8| async { Err::<u8, BoxError>("primary down".into()) });
    let secondary = service_fn(|_: u8| async { Err::<u8, BoxError>("secondary down".into()) });
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::service(secondary))
        .service(primary);
    let err = svc.oneshot(1).await.expect_err("both fail");
    assert_eq!(err.to_string(), "secondary down");
}

#[tokio::test]
async fn on_rejection_only_catches_an_open_circuit() {
    let layer = FallbackLayer::value(|_: Failed<&'static str>| "degraded").on_rejection();
    let open = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: ()| async {
            Err::<&'static str, _>(CircuitOpen::new(None))
        }));
    assert_eq!(open.oneshot(()).await.expect("fallback"), "degraded");

    let limited = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: ()| async {
            Err::<&'static str, _>(RateLimited::new(
                Duration::from_secs(1),
                5,
                Duration::from_secs(1),
            ))
        }));
    assert_eq!(limited.oneshot(()).await.expect("fallback"), "degraded");

    let full = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: ()| async {
            Err::<&'static str, _>(BulkheadFull::queue_full())
        }));
    assert_eq!(full.oneshot(()).await.expect("fallback"), "degraded");

    let failing = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async {
            Err::<&'static str, _>(PrimaryFailed)
        }));
    let err = failing.oneshot(()).await.expect_err("not a rejection");
    assert!(err.is::<PrimaryFailed>());
}

#[tokio::test]
async fn predicate_decides() {
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::value(|_: Failed<u32>| 0)
                .when(|e: &BoxError| e.to_string().contains("retryable")),
        )
        .service(service_fn(|n: u32| async move {
            if n == 0 {
                Err::<u32, BoxError>("retryable glitch".into())
            } else {
                Err("fatal".into())
            }
        }));
    assert_eq!(svc.clone().oneshot(0).await.expect("fallback"), 0);
    assert!(svc.oneshot(1).await.is_err());
}

#[tokio::test]
async fn classified_failed_responses_fall_back() {
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::value(|failed: Failed<Response<&'static str>>| match failed {
                Failed::Response(res) => {
                    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
                    Response::new("cached")
                }
                Failed::Error(_) => Response::new("error"),
            })
            .on_failure(HttpClassifier::new()),
        )
        .service(service_fn(|code: u16| async move {
            let mut res = Response::new("live");
            *res.status_mut() = StatusCode::from_u16(code)?;
            Ok::<_, BoxError>(res)
        }));
    assert_eq!(
        *svc.clone().oneshot(502).await.expect("ok").body(),
        "cached"
    );
    assert_eq!(*svc.clone().oneshot(404).await.expect("ok").body(), "live");
    assert_eq!(*svc.oneshot(200).await.expect("ok").body(), "live");
}
