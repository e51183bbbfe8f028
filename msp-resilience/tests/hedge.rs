//! Hedge: delay, first success wins, loser cancelled, idempotent only,
//! budget, percentile.

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use msp_resilience::hedge::HedgeLayer;
use msp_resilience::retry::RetryBudget;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// Sets its flag when dropped: tells whether a losing copy was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Copy `n` takes `delays(n)` and then answers `Ok(n)` or, if `fails(n)`, an error.
fn backend(
    calls: Arc<AtomicU32>,
    delays: fn(u32) -> Duration,
    fails: fn(u32) -> bool,
    dropped: Arc<AtomicBool>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |_req: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let flag = DropFlag(dropped.clone());
        async move {
            tokio::time::sleep(delays(n)).await;
            std::mem::forget(flag);
            if fails(n) {
                Err::<u32, BoxError>(format!("copy {n} failed").into())
            } else {
                Ok(n)
            }
        }
    })
}

fn is_err(_: &u32, r: Result<&u32, &BoxError>) -> bool {
    r.is_err()
}

#[tokio::test(start_paused = true)]
async fn hedge_fires_after_the_delay_and_the_first_success_wins() {
    let calls = Arc::new(AtomicU32::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::new(Duration::from_millis(100), is_err).no_budget())
        .service(backend(
            calls.clone(),
            |n| {
                if n == 0 {
                    Duration::from_secs(10)
                } else {
                    Duration::from_millis(20)
                }
            },
            |_| false,
            dropped.clone(),
        ));
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.expect("ok"), 1, "the hedge answered");
    assert_eq!(start.elapsed(), Duration::from_millis(120));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the slow first copy was cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn fast_requests_are_not_hedged() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::new(Duration::from_millis(100), is_err).no_budget())
        .service(backend(
            calls.clone(),
            |_| Duration::from_millis(99),
            |_| false,
            Arc::default(),
        ));
    assert_eq!(svc.oneshot(1).await.expect("ok"), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_copy_waits_for_the_hedge() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::new(Duration::from_millis(100), is_err).no_budget())
        .service(backend(
            calls.clone(),
            |n| {
                if n == 0 {
                    Duration::from_millis(150)
                } else {
                    Duration::from_millis(100)
                }
            },
            |n| n == 0,
            Arc::default(),
        ));
    // Copy 0 fails at 150 ms; copy 1 (sent at 100 ms) succeeds at 200 ms.
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.expect("hedge succeeds"), 1);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_delay_is_returned_without_hedging() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::new(Duration::from_millis(100), is_err).no_budget())
        .service(backend(
            calls.clone(),
            |_| Duration::from_millis(10),
            |_| true,
            Arc::default(),
        ));
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn both_copies_failing_returns_an_error() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::new(Duration::from_millis(100), is_err).no_budget())
        .service(backend(
            calls.clone(),
            |_| Duration::from_millis(150),
            |_| true,
            Arc::default(),
        ));
    let err = svc.oneshot(1).await.expect_err("both fail");
    assert_eq!(err.to_string(), "copy 1 failed", "the last failure");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_the_hedge_rate() {
    let calls = Arc::new(AtomicU32::new(0));
    let budget = RetryBudget::new(10.0, 0, Duration::from_secs(10)).expect("budget");
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::new(Duration::from_millis(10), is_err).budget(budget))
        .service(backend(
            calls.clone(),
            |_| Duration::from_millis(50),
            |_| false,
            Arc::default(),
        ));
    for i in 0..100 {
        svc.clone().oneshot(i).await.expect("ok");
    }
    let hedges = calls.load(Ordering::SeqCst) - 100;
    assert!(
        (9..=10).contains(&hedges),
        "{hedges} hedges for 100 slow requests at 10 %"
    );
}

#[tokio::test(start_paused = true)]
async fn percentile_delay_follows_recent_latencies() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = HedgeLayer::new(Duration::from_secs(60), is_err)
        .no_budget()
        .percentile(90.0, 20)
        .expect("valid percentile");
    let svc = ServiceBuilder::new().layer(layer.clone()).service(backend(
        calls.clone(),
        // 20 quick calls of 10 ms, then a stuck one, then its quick hedge.
        |n| match n {
            0..20 => Duration::from_millis(10),
            20 => Duration::from_secs(60),
            _ => Duration::from_millis(1),
        },
        |_| false,
        Arc::default(),
    ));
    for i in 0..20 {
        svc.clone().oneshot(i).await.expect("ok");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20, "no hedges while learning");
    let p90 = layer.current_delay().expect("enough samples");
    assert!(
        p90 >= Duration::from_millis(10) && p90 < Duration::from_millis(12),
        "{p90:?}"
    );

    let start = Instant::now();
    assert_eq!(svc.oneshot(99).await.expect("ok"), 21);
    assert!(
        start.elapsed() < Duration::from_millis(20),
        "{:?}",
        start.elapsed()
    );
}

fn http_backend(
    calls: Arc<AtomicU32>,
) -> impl Service<
    Request<msp_resilience::retry::ReplayBody<Full<Bytes>>>,
    Response = Response<()>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |_req| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(Response::new(()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn http_hedges_get_but_not_post() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(HedgeLayer::idempotent_http(Duration::from_millis(100)).no_budget())
        .service(http_backend(calls.clone()));

    svc.clone()
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("ok");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "GET hedged");

    let mut post = Request::new(Full::new(Bytes::from_static(b"order")));
    *post.method_mut() = Method::POST;
    let res = svc.oneshot(post).await.expect("ok");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "POST sent once");
}

#[tokio::test(start_paused = true)]
async fn http_bodies_of_unknown_or_large_size_are_not_hedged() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(
            HedgeLayer::idempotent_http(Duration::from_millis(100))
                .no_budget()
                .max_body(8),
        )
        .service(service_fn(move |_req: Request<_>| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, BoxError>(Response::new(()))
            }
        }));
    let chunks = ["ab"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from(s))));
    let mut put = Request::new(StreamBody::new(stream::iter(chunks)));
    *put.method_mut() = Method::PUT;
    svc.oneshot(put).await.expect("ok");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "unknown length: not hedged"
    );
}

#[test]
fn config_is_validated_when_parsed_or_built() {
    use msp_resilience::hedge::{HedgeConfig, HedgeConfigError, HedgeDelay};
    for bad in [
        r#"{"delay": {"percentile": {"percentile": 0.0}}}"#,
        r#"{"delay": {"fixed": "10ms"}, "budget": {"percent": 10.0, "ttl": "1h"}}"#,
        r#"{"delay": {"fixed": "10ms"}, "max_bdy": 10}"#,
        r#"{"budget": null}"#,
    ] {
        assert!(serde_json::from_str::<HedgeConfig>(bad).is_err(), "{bad}");
    }
    assert_eq!(
        HedgeConfig::builder(HedgeDelay::percentile(120.0)).build(),
        Err(HedgeConfigError::Percentile(120.0))
    );
    let cfg = HedgeConfig::builder(HedgeDelay::Fixed(Duration::from_millis(20)))
        .max_body(1024)
        .build()
        .expect("valid");
    let json = serde_json::to_string(&cfg).expect("serialize");
    assert_eq!(
        serde_json::from_str::<HedgeConfig>(&json).expect("parse"),
        cfg
    );
    assert_eq!(
        HedgeLayer::from_config(&cfg).current_delay(),
        Some(Duration::from_millis(20))
    );
}
