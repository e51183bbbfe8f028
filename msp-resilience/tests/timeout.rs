//! Timeout: deadlines, per-request overrides and propagation.

use http::{Request, Response};
use msp_core::classify::{ErrorKind, error_kind};
use msp_resilience::timeout::{
    DEADLINE_HEADER, Deadline, Elapsed, GRPC_TIMEOUT_HEADER, TimeoutConfig, TimeoutConfigError,
    TimeoutLayer, TimeoutOverride,
};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

/// What the backend saw: the deadline header, extension and `grpc-timeout`.
type Seen = (Option<String>, Option<Deadline>, Option<String>);

/// A backend that sleeps `delay` and echoes the deadline it saw.
fn sleepy(
    delay: Duration,
) -> impl tower::Service<Request<()>, Response = Response<Seen>, Error = BoxError, Future = impl Send>
+ Clone {
    service_fn(move |req: Request<()>| async move {
        let header = req
            .headers()
            .get(&DEADLINE_HEADER)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let grpc = req
            .headers()
            .get(&GRPC_TIMEOUT_HEADER)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let deadline = req.extensions().get::<Deadline>().copied();
        tokio::time::sleep(delay).await;
        Ok::<_, BoxError>(Response::new((header, deadline, grpc)))
    })
}

#[tokio::test(start_paused = true)]
async fn slow_call_fails_with_elapsed_at_the_deadline() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(sleepy(Duration::from_millis(500)));
    let start = Instant::now();
    let err = svc.oneshot(Request::new(())).await.expect_err("times out");
    assert!(err.is::<Elapsed>(), "{err:?}");
    assert_eq!(error_kind(&*err), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn fast_call_passes() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(sleepy(Duration::from_millis(99)));
    svc.oneshot(Request::new(())).await.expect("in time");
}

#[tokio::test(start_paused = true)]
async fn per_request_override_replaces_the_timeout() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(sleepy(Duration::from_millis(200)));

    let mut longer = Request::new(());
    longer
        .extensions_mut()
        .insert(TimeoutOverride(Duration::from_millis(300)));
    let res = svc
        .clone()
        .oneshot(longer)
        .await
        .expect("override allows 300 ms");
    assert_eq!(res.body().0.as_deref(), Some("300"));

    let mut shorter = Request::new(());
    shorter
        .extensions_mut()
        .insert(TimeoutOverride(Duration::from_millis(10)));
    let start = Instant::now();
    let err = svc.oneshot(shorter).await.expect_err("10 ms is too short");
    assert!(err.is::<Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn deadline_extension_caps_a_longer_timeout() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(sleepy(Duration::from_secs(1)));
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(50)));
    let start = Instant::now();
    let err = svc.oneshot(req).await.expect_err("deadline passes first");
    assert!(err.is::<Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn remaining_budget_is_propagated_downstream() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(250)))
        .service(sleepy(Duration::ZERO));
    let start = Instant::now();
    let res = svc.oneshot(Request::new(())).await.expect("ok");
    let (header, deadline, grpc) = res.into_body();
    assert_eq!(header.as_deref(), Some("250"));
    assert_eq!(deadline, Some(Deadline(start + Duration::from_millis(250))));
    assert_eq!(grpc, None, "not a gRPC request");
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_reaches_an_inner_per_attempt_timeout() {
    // Outer: overall 100 ms; inner: 1 s per attempt. The inner layer sees
    // and propagates the earlier, overall deadline.
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(sleepy(Duration::ZERO));
    let res = svc.oneshot(Request::new(())).await.expect("ok");
    assert_eq!(res.body().0.as_deref(), Some("100"));
}

#[tokio::test(start_paused = true)]
async fn propagation_can_be_turned_off() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(250)).propagate(false))
        .service(sleepy(Duration::ZERO));
    let res = svc.oneshot(Request::new(())).await.expect("ok");
    assert_eq!(res.body().0, None);
    assert_eq!(res.body().1, None);
}

#[tokio::test(start_paused = true)]
async fn incoming_deadline_header_caps_the_server_side_deadline() {
    let layer = TimeoutLayer::new(Duration::from_secs(1));
    let req = || {
        Request::builder()
            .header("x-msp-deadline-ms", "30")
            .body(())
            .expect("request")
    };
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(sleepy(Duration::from_millis(100)));
    let start = Instant::now();
    let err = svc
        .oneshot(req())
        .await
        .expect_err("caller only waits 30 ms");
    assert!(err.is::<Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_millis(30));

    // A header can never lengthen the deadline.
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(10)))
        .service(sleepy(Duration::from_millis(100)));
    let long = Request::builder()
        .header("x-msp-deadline-ms", "60000")
        .body(())
        .expect("request");
    assert!(svc.oneshot(long).await.is_err());

    // Ignored when reading headers is off.
    let svc = ServiceBuilder::new()
        .layer(layer.read_headers(false))
        .service(sleepy(Duration::from_millis(100)));
    svc.oneshot(req()).await.expect("header ignored");
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_read_and_written() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(sleepy(Duration::ZERO));
    let req = Request::builder()
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "20m")
        .body(())
        .expect("request");
    let res = svc.oneshot(req).await.expect("ok");
    let (header, _, grpc) = res.into_body();
    assert_eq!(header.as_deref(), Some("20"));
    assert_eq!(grpc.as_deref(), Some("20000000n"));
}

#[test]
fn config_rejects_unknown_fields_and_a_zero_timeout() {
    let ok: TimeoutConfig = serde_json::from_str(r#"{"timeout":"2s"}"#).expect("valid");
    assert_eq!(ok.timeout(), Duration::from_secs(2));
    assert!(ok.propagate() && ok.read_headers());
    assert_eq!(
        ok,
        TimeoutConfig::builder(Duration::from_secs(2))
            .build()
            .expect("valid")
    );
    assert!(serde_json::from_str::<TimeoutConfig>(r#"{"timeout":"2s","tmeout":"1s"}"#).is_err());
    assert!(serde_json::from_str::<TimeoutConfig>(r#"{"timeout":"soon"}"#).is_err());
    assert!(serde_json::from_str::<TimeoutConfig>(r#"{"timeout":"0s"}"#).is_err());
    assert_eq!(
        TimeoutConfig::builder(Duration::ZERO).build(),
        Err(TimeoutConfigError::Zero)
    );
}

#[test]
fn config_round_trips_through_serde() {
    let cfg = TimeoutConfig::builder(Duration::from_millis(1500))
        .read_headers(false)
        .build()
        .expect("valid");
    let json = serde_json::to_string(&cfg).expect("serialize");
    assert_eq!(
        serde_json::from_str::<TimeoutConfig>(&json).expect("parse"),
        cfg
    );
}

#[tokio::test(start_paused = true)]
async fn works_for_non_http_requests() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(5)))
        .service(service_fn(|n: u32| async move {
            tokio::time::sleep(Duration::from_millis(u64::from(n))).await;
            Ok::<_, BoxError>(n)
        }));
    assert_eq!(svc.clone().oneshot(1).await.expect("fast"), 1);
    assert!(svc.oneshot(10).await.expect_err("slow").is::<Elapsed>());
}
