//! msp_core::http: problem bodies, the registry, and HttpErrorLayer in an
//! axum router.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use msp_core::http::{
    HttpErrorLayer, Problem, ToProblem, header, is_registered, problem_for, register,
};
use msp_core::{BoxError, Elapsed};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[derive(Debug, thiserror::Error)]
#[error("order {0} is locked")]
struct Locked(u32);

impl ToProblem for Locked {
    fn to_problem(&self) -> Problem {
        Problem::new(
            StatusCode::LOCKED,
            "locked",
            format!("order {} is locked", self.0),
        )
        .with_retry_after(Some(Duration::from_millis(100)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream failed")]
struct Upstream(#[source] BoxError);

#[derive(Debug, thiserror::Error)]
#[error("connect to 10.0.0.7:5432 as admin/hunter2 failed")]
struct Secret;

#[derive(Debug, thiserror::Error)]
#[error("never registered")]
struct NeverRegistered;

impl ToProblem for NeverRegistered {
    fn to_problem(&self) -> Problem {
        Problem::new(StatusCode::IM_A_TEAPOT, "teapot", "short and stout")
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("problem body is JSON")
}

async fn body_of<B>(res: Response<B>) -> (StatusCode, http::HeaderMap, serde_json::Value)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, json(&bytes))
}

#[test]
fn problem_body_is_rfc9457_with_escaped_detail() {
    let p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_instances",
        "quote \" backslash \\ newline \n tab \t bell \u{7} é",
    );
    let v = json(&p.to_bytes());
    assert_eq!(v["type"], "about:blank");
    assert_eq!(v["title"], "Service Unavailable");
    assert_eq!(v["status"], 503);
    assert_eq!(v["code"], "no_instances");
    assert_eq!(
        v["detail"],
        "quote \" backslash \\ newline \n tab \t bell \u{7} é"
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(5));
}

#[test]
fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
    let at = |d: Duration| {
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .with_retry_after(Some(d))
            .into_response::<Body>()
            .headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    assert_eq!(at(Duration::ZERO), "1");
    assert_eq!(at(Duration::from_millis(1)), "1");
    assert_eq!(at(Duration::from_secs(2)), "2");
    assert_eq!(at(Duration::from_millis(2001)), "3");
    let none = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "x", "y").into_response::<Body>();
    assert!(none.headers().get("retry-after").is_none());
    assert_eq!(none.headers()["content-type"], "application/problem+json");
}

#[test]
fn registered_types_are_found_anywhere_in_the_source_chain() {
    register::<Locked>();
    register::<Locked>(); // idempotent
    assert!(is_registered::<Locked>());

    let direct = problem_for(&Locked(7));
    assert_eq!(direct.status(), StatusCode::LOCKED);
    assert_eq!(direct.detail(), "order 7 is locked");
    assert_eq!(direct.retry_after(), Some(Duration::from_millis(100)));

    let behind_source = Upstream(Box::new(Locked(8)));
    assert_eq!(problem_for(&behind_source).code(), "locked");

    // io::Error's own `source()` skips the error it wraps; still found.
    let behind_io = std::io::Error::other(Upstream(Box::new(Locked(9))));
    assert_eq!(problem_for(&behind_io).detail(), "order 9 is locked");
}

#[test]
fn an_unregistered_type_is_not_consulted() {
    assert!(!is_registered::<NeverRegistered>());
    let p = problem_for(&NeverRegistered);
    assert_eq!(p.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(p.code(), "internal");
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_504_by_type() {
    let tokio_elapsed =
        tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>())
            .await
            .expect_err("times out");
    let cases: Vec<BoxError> = vec![
        Elapsed::new().into(),
        Box::new(Upstream(Elapsed::new().into())),
        Box::new(tokio_elapsed),
        Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        Box::new(std::io::Error::other(Elapsed::new())),
    ];
    for err in cases {
        let p = problem_for(&*err);
        assert_eq!(p.status(), StatusCode::GATEWAY_TIMEOUT, "{err:?}");
        assert_eq!(p.code(), "timeout");
    }
    // Text is not a type.
    let text = std::io::Error::other("request timed out");
    assert_eq!(
        problem_for(&text).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[test]
fn an_unknown_error_reveals_nothing() {
    let p = problem_for(&Upstream(Box::new(Secret)));
    assert_eq!(p.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = String::from_utf8(p.to_bytes().to_vec()).expect("utf-8");
    for leak in ["hunter2", "10.0.0.7", "admin", "upstream", "Secret"] {
        assert!(!body.contains(leak), "{leak} leaked: {body}");
    }
}

fn failing(
    make: fn() -> BoxError,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<Body>, BoxError>> + Send,
> + Clone {
    service_fn(move |_req: Request<Body>| async move { Err::<Response<Body>, _>(make()) })
}

#[tokio::test]
async fn the_layer_answers_registered_mapped_and_unknown_errors_in_axum() {
    register::<Locked>();
    let layer = HttpErrorLayer::new()
        .map(|_: &Secret| Problem::new(StatusCode::BAD_GATEWAY, "db_down", "database unavailable"))
        .problem::<NeverRegistered>();
    let route = |make| {
        ServiceBuilder::new()
            .layer(layer.clone())
            .service(failing(make))
    };
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route_service("/locked", route(|| Box::new(Locked(1))))
        .route_service("/mapped", route(|| Box::new(Upstream(Box::new(Secret)))))
        .route_service("/layer-only", route(|| Box::new(NeverRegistered)))
        .route_service("/unknown", route(|| "disk /dev/sda1 on fire".into()));

    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    let res = app.clone().oneshot(get("/ok")).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);

    let (status, headers, v) = body_of(
        app.clone()
            .oneshot(get("/locked"))
            .await
            .expect("infallible"),
    )
    .await;
    assert_eq!(status, StatusCode::LOCKED);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(v["code"], "locked");

    // A layer mapping wins over the default 500, even behind a wrapper.
    let (status, _, v) = body_of(
        app.clone()
            .oneshot(get("/mapped"))
            .await
            .expect("infallible"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(v["code"], "db_down");

    let (status, _, _) = body_of(
        app.clone()
            .oneshot(get("/layer-only"))
            .await
            .expect("infallible"),
    )
    .await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);

    let (status, _, v) = body_of(app.oneshot(get("/unknown")).await.expect("infallible")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["code"], "internal");
    assert!(!v.to_string().contains("sda1"), "{v}");
}

#[tokio::test]
async fn unknown_status_is_configurable_and_still_opaque() {
    let svc = ServiceBuilder::new()
        .layer(HttpErrorLayer::new().unknown_status(StatusCode::BAD_GATEWAY))
        .service(failing(|| "10.1.2.3 refused".into()));
    let res = svc
        .oneshot(Request::new(Body::empty()))
        .await
        .expect("infallible");
    let (status, _, v) = body_of(res).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(v["title"], "Bad Gateway");
    assert!(!v.to_string().contains("10.1.2.3"), "{v}");
}

#[tokio::test]
async fn a_readiness_error_is_answered_on_the_next_call_and_not_inherited_by_clones() {
    register::<Locked>();
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut svc = tower::Layer::layer(&HttpErrorLayer::new(), mock);
    handle.send_error(Locked(3));
    let ready = svc.ready().await.expect("infallible");
    // A clone taken now must not answer with the readiness error.
    let mut clone = ready.clone();
    let res = tower::Service::call(ready, Request::new(Body::empty()))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::LOCKED);

    handle.allow(1);
    let ready = clone.ready().await.expect("infallible");
    let call = tower::Service::call(ready, Request::new(Body::empty()));
    let (_req, send) = handle
        .next_request()
        .await
        .expect("the clone called the inner service");
    send.send_response(Response::new(Body::from("inner")));
    let res = call.await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_response_future_is_named_and_never_fails() {
    let mut svc = tower::Layer::layer(&HttpErrorLayer::new(), failing(|| Elapsed::new().into()));
    let ready = svc.ready().await.expect("infallible");
    let fut: msp_core::http::future::ResponseFuture<_, Body> =
        tower::Service::call(ready, Request::new(Body::empty()));
    let res: Result<_, std::convert::Infallible> = fut.await;
    assert_eq!(
        res.map(|r| r.status()).ok(),
        Some(StatusCode::GATEWAY_TIMEOUT)
    );
}

#[test]
fn a_layer_mapping_overrides_a_registered_answer() {
    register::<Locked>();
    let layer = HttpErrorLayer::new()
        .map(|_: &Locked| Problem::new(StatusCode::CONFLICT, "busy", "try later"));
    let err = Upstream(Box::new(Locked(4)));
    assert_eq!(layer.problem_for(&err).status(), StatusCode::CONFLICT);
    assert_eq!(problem_for(&err).status(), StatusCode::LOCKED);
    // Clones taken before a mapping was added keep their own answers.
    let plain = HttpErrorLayer::new();
    let mapped = plain
        .clone()
        .map(|_: &Secret| Problem::new(StatusCode::BAD_GATEWAY, "db_down", "database unavailable"));
    assert_eq!(
        plain.problem_for(&Secret).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        mapped.problem_for(&Secret).status(),
        StatusCode::BAD_GATEWAY
    );
}

#[test]
fn shared_header_names() {
    assert_eq!(header::IDEMPOTENCY_KEY.as_str(), "idempotency-key");
    assert_eq!(header::DEADLINE_MS.as_str(), "x-msp-deadline-ms");
    assert_eq!(header::GRPC_TIMEOUT.as_str(), "grpc-timeout");
    assert_eq!(header::REQUEST_ID.as_str(), "x-request-id");
}
