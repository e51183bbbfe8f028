//! Retry: budget, idempotency, body replay, Retry-After, per-try timeout,
//! backoff and the closure policy.

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use msp_core::backoff::{Backoff, Jitter};
use msp_resilience::retry::{
    BudgetExhausted, ReplayBody, RetryBudget, RetryConfig, RetryConfigError, RetryLayer,
};
use msp_resilience::timeout::{Deadline, Elapsed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// Records every call (method and body bytes) and answers from `script`
/// (attempt number → status, headers, delay), repeating the last entry.
#[derive(Clone, Default)]
struct Backend {
    seen: Arc<Mutex<Vec<(Method, Bytes)>>>,
}

type Script = Arc<dyn Fn(usize) -> (StatusCode, Option<&'static str>, Duration) + Send + Sync>;

impl Backend {
    fn calls(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    fn bodies(&self) -> Vec<Bytes> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

#[allow(clippy::type_complexity)]
fn make_service<B>(
    seen: Arc<Mutex<Vec<(Method, Bytes)>>>,
    script: Script,
) -> impl Service<Request<B>, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    {
        service_fn(move |req: Request<B>| {
            let seen = seen.clone();
            let script = script.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
                let n = {
                    let mut seen = seen.lock().expect("lock");
                    seen.push((parts.method, bytes));
                    seen.len() - 1
                };
                let (status, retry_after, delay) = script(n);
                tokio::time::sleep(delay).await;
                let mut res = Response::builder().status(status);
                if let Some(ra) = retry_after {
                    res = res.header("retry-after", ra);
                }
                Ok::<_, BoxError>(res.body(())?)
            }
        })
    }
}

fn always(status: StatusCode) -> Script {
    Arc::new(move |_| (status, None, Duration::ZERO))
}

fn fail_then_ok(failures: usize) -> Script {
    Arc::new(move |n| {
        if n < failures {
            (StatusCode::SERVICE_UNAVAILABLE, None, Duration::ZERO)
        } else {
            (StatusCode::OK, None, Duration::ZERO)
        }
    })
}

fn fast_backoff() -> Backoff {
    Backoff::constant(Duration::from_millis(1)).expect("valid backoff")
}

fn get(body: &'static str) -> Request<Full<Bytes>> {
    Request::new(Full::new(Bytes::from_static(body.as_bytes())))
}

#[tokio::test(start_paused = true)]
async fn retries_a_failing_get_until_it_succeeds() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .max_attempts(3)
                .backoff(fast_backoff()),
        )
        .service(make_service(backend.seen.clone(), fail_then_ok(2)));
    let res = svc.oneshot(get("")).await.expect("ok");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn stops_at_max_attempts_and_returns_the_last_response() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .max_attempts(3)
                .backoff(fast_backoff())
                .no_budget(),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::BAD_GATEWAY),
        ));
    let res = svc.oneshot(get("")).await.expect("a response");
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn budget_bounds_retries_when_the_downstream_always_fails() {
    let backend = Backend::default();
    // 20 % of recent requests, no per-second floor.
    let budget = RetryBudget::new(20.0, 0, Duration::from_secs(10)).expect("budget");
    let layer = RetryLayer::idempotent_http()
        .max_attempts(4)
        .backoff(fast_backoff())
        .budget(budget.clone());
    let svc = ServiceBuilder::new().layer(layer).service(make_service(
        backend.seen.clone(),
        always(StatusCode::SERVICE_UNAVAILABLE),
    ));

    // 100 requests, each through its own clone (as axum does).
    for _ in 0..100 {
        let res = svc.clone().oneshot(get("")).await.expect("a response");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let calls = backend.calls();
    // Without the budget: 400 calls. With it: 100 + 20 % of 100.
    assert!(calls <= 120, "budget did not bound retries: {calls} calls");
    assert!(
        calls >= 115,
        "retries should still happen within budget: {calls} calls"
    );
    assert_eq!(budget.balance(), 0);
}

#[tokio::test(start_paused = true)]
async fn exhausted_budget_can_surface_as_a_typed_error() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .budget(RetryBudget::new(0.0, 0, Duration::from_secs(10)).expect("budget"))
                .budget_exhausted_error(true),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));
    let err = svc.oneshot(get("")).await.expect_err("budget is empty");
    assert!(err.is::<BudgetExhausted>(), "{err:?}");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_not_retried() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::idempotent_http().backoff(fast_backoff()))
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));

    for method in [Method::POST, Method::PATCH] {
        let mut req = get("order");
        *req.method_mut() = method;
        let res = svc.clone().oneshot(req).await.expect("a response");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(backend.calls(), 2, "each POST/PATCH sent exactly once");

    // An Idempotency-Key makes a POST safe to retry.
    let mut req = get("order");
    *req.method_mut() = Method::POST;
    req.headers_mut()
        .insert("idempotency-key", "k-1".parse().expect("value"));
    svc.clone().oneshot(req).await.expect("a response");
    assert_eq!(backend.calls(), 2 + 3);

    // So does the explicit opt-in.
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .retry_non_idempotent(true),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));
    let mut req = get("order");
    *req.method_mut() = Method::POST;
    svc.oneshot(req).await.expect("a response");
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn small_bodies_are_replayed_with_identical_bytes() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .max_replay_body(16),
        )
        .service(make_service(backend.seen.clone(), fail_then_ok(2)));
    let mut req = get("0123456789abcdef");
    *req.method_mut() = Method::PUT;
    svc.oneshot(req).await.expect("ok");
    assert_eq!(
        backend.bodies(),
        vec![Bytes::from_static(b"0123456789abcdef"); 3]
    );
}

#[tokio::test(start_paused = true)]
async fn streamed_bodies_under_the_limit_are_replayed() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .max_replay_body(16),
        )
        .service(make_service(backend.seen.clone(), fail_then_ok(1)));
    let chunks = ["ab", "cd", "ef"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from(s))));
    let req = Request::new(StreamBody::new(stream::iter(chunks)));
    svc.oneshot(req).await.expect("ok");
    assert_eq!(backend.bodies(), vec![Bytes::from_static(b"abcdef"); 2]);
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_replay_limit_are_sent_once() {
    // Known length over the limit.
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .max_replay_body(16),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));
    let res = svc
        .oneshot(get("0123456789abcdefX"))
        .await
        .expect("a response");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        backend.bodies(),
        vec![Bytes::from_static(b"0123456789abcdefX")]
    );

    // Unknown length that grows over the limit while streaming.
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .max_replay_body(16),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));
    let chunks =
        ["0123456789", "abcdefghij"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from(s))));
    let res = svc
        .oneshot(Request::new(StreamBody::new(stream::iter(chunks))))
        .await
        .expect("a response");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        backend.bodies(),
        vec![Bytes::from_static(b"0123456789abcdefghij")]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_respected() {
    let backend = Backend::default();
    let script: Script = Arc::new(|n| {
        if n == 0 {
            (StatusCode::TOO_MANY_REQUESTS, Some("2"), Duration::ZERO)
        } else {
            (StatusCode::OK, None, Duration::ZERO)
        }
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::idempotent_http().backoff(fast_backoff()))
        .service(make_service(backend.seen.clone(), script));
    let start = Instant::now();
    let res = svc.oneshot(get("")).await.expect("ok");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(backend.calls(), 2);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "waited only {:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_maximum_returns_the_response() {
    let backend = Backend::default();
    let script: Script =
        Arc::new(|_| (StatusCode::SERVICE_UNAVAILABLE, Some("120"), Duration::ZERO));
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .max_retry_after(Duration::from_secs(30)),
        )
        .service(make_service(backend.seen.clone(), script));
    let start = Instant::now();
    let res = svc.oneshot(get("")).await.expect("a response");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.calls(), 1);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_retries_a_hanging_attempt() {
    let backend = Backend::default();
    let script: Script = Arc::new(|n| {
        let delay = if n == 0 {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        };
        (StatusCode::OK, None, delay)
    });
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .backoff(fast_backoff())
                .per_try_timeout(Duration::from_millis(100)),
        )
        .service(make_service(backend.seen.clone(), script));
    let start = Instant::now();
    let res = svc.oneshot(get("")).await.expect("second attempt answers");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(backend.calls(), 2);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_error_is_elapsed_when_attempts_run_out() {
    let backend = Backend::default();
    let script: Script = Arc::new(|_| (StatusCode::OK, None, Duration::from_secs(60)));
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .max_attempts(2)
                .backoff(fast_backoff())
                .per_try_timeout(Duration::from_millis(100)),
        )
        .service(make_service(backend.seen.clone(), script));
    let err = svc.oneshot(get("")).await.expect_err("every attempt hangs");
    assert!(err.is::<Elapsed>());
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_are_waited() {
    let backend = Backend::default();
    let backoff = Backoff::builder()
        .initial(Duration::from_millis(100))
        .multiplier(2.0)
        .jitter(Jitter::None)
        .build()
        .expect("backoff");
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .max_attempts(4)
                .backoff(backoff)
                .no_budget(),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));
    let start = Instant::now();
    svc.oneshot(get("")).await.expect("a response");
    assert_eq!(backend.calls(), 4);
    // 100 + 200 + 400 ms of backoff, in virtual time.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_request_deadline() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::idempotent_http()
                .max_attempts(10)
                .backoff(Backoff::constant(Duration::from_millis(100)).expect("backoff"))
                .no_budget(),
        )
        .service(make_service(
            backend.seen.clone(),
            always(StatusCode::SERVICE_UNAVAILABLE),
        ));
    let mut req = get("");
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(150)));
    svc.oneshot(req).await.expect("a response");
    // Attempts at 0 ms and 100 ms; the next one would start at 200 ms.
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_501_are_not_retried() {
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_IMPLEMENTED,
    ] {
        let backend = Backend::default();
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::idempotent_http().backoff(fast_backoff()))
            .service(make_service(backend.seen.clone(), always(status)));
        assert_eq!(
            svc.oneshot(get("")).await.expect("a response").status(),
            status
        );
        assert_eq!(backend.calls(), 1, "{status} must not be retried");
    }
}

#[tokio::test(start_paused = true)]
async fn closure_policy_retries_any_clone_able_request() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let inner = service_fn(move |req: String| {
        let n = {
            let mut seen = seen.lock().expect("lock");
            seen.push(req.clone());
            seen.len()
        };
        async move {
            if n < 3 {
                Err::<String, BoxError>("flaky".into())
            } else {
                Ok(format!("{req}!"))
            }
        }
    });
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(|_req: &String, res: Result<&String, &BoxError>| res.is_err())
                .max_attempts(5)
                .backoff(fast_backoff()),
        )
        .service(inner);
    assert_eq!(
        svc.oneshot("hi".to_owned()).await.expect("third try"),
        "hi!"
    );
    assert_eq!(*calls.lock().expect("lock"), vec!["hi"; 3]);
}

#[tokio::test(start_paused = true)]
async fn waits_for_readiness_before_retrying() {
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(|_: &u32, res: Result<&u32, &BoxError>| res.is_err())
                .backoff(fast_backoff())
                .no_budget(),
        )
        .service(mock);
    handle.allow(1);
    svc.ready().await.expect("ready");
    let fut = tokio::spawn(svc.call(7));
    let (req, send) = handle.next_request().await.expect("first attempt");
    assert_eq!(req, 7);
    send.send_error("boom");
    // The retry waits until the inner service is ready again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!fut.is_finished());
    handle.allow(1);
    let (req, send) = handle.next_request().await.expect("retry");
    assert_eq!(req, 7);
    send.send_response(8);
    assert_eq!(fut.await.expect("join").expect("ok"), 8);
}

#[test]
fn config_is_validated_when_parsed_or_built() {
    for bad in [
        r#"{"max_attempts": 0}"#,
        r#"{"budget": {"percent": 20.0, "ttl": "100ms"}}"#,
        r#"{"retry_statuses": [42]}"#,
        r#"{"max_atempts": 3}"#,
    ] {
        assert!(serde_json::from_str::<RetryConfig>(bad).is_err(), "{bad}");
    }
    assert_eq!(
        RetryConfig::builder().max_attempts(0).build(),
        Err(RetryConfigError::ZeroAttempts)
    );
    assert_eq!(
        RetryConfig::builder().never_retry_statuses([1000]).build(),
        Err(RetryConfigError::Status(1000))
    );
    let cfg: RetryConfig = serde_json::from_str(r#"{"budget": null}"#).expect("parses");
    assert_eq!(
        cfg,
        RetryConfig::builder().budget(None).build().expect("valid")
    );
    let layer = RetryLayer::from_config(&cfg);
    assert!(layer.retry_budget().is_none());
}

#[test]
fn config_round_trips_through_serde() {
    let cfg = RetryConfig::builder()
        .max_attempts(5)
        .per_try_timeout(std::time::Duration::from_millis(250))
        .retry_statuses([409])
        .build()
        .expect("valid");
    let json = serde_json::to_string(&cfg).expect("serialize");
    assert_eq!(
        serde_json::from_str::<RetryConfig>(&json).expect("parse"),
        cfg
    );
}

#[tokio::test(start_paused = true)]
async fn inner_request_type_is_a_replay_body() {
    // The inner service sees `Request<ReplayBody<B>>`; this compiles only if so.
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::idempotent_http())
        .service(service_fn(
            |req: Request<ReplayBody<Full<Bytes>>>| async move {
                let body = req.into_body().collect().await?.to_bytes();
                Ok::<_, BoxError>(Response::new(body))
            },
        ));
    let res = svc.oneshot(get("x")).await.expect("ok");
    assert_eq!(res.into_body(), "x");
}
