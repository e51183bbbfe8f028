//! msp-resilience's rejections behind msp-core's one `HttpErrorLayer`,
//! inside a real axum Router on loopback: each error type registered
//! itself, so the layer needs no mapping.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_core::http::{HttpErrorLayer, Problem};
use msp_resilience::bulkhead::error::BulkheadFull;
use msp_resilience::circuit_breaker::error::CircuitOpen;
use msp_resilience::rate_limit::error::RateLimited;
use msp_resilience::retry::BudgetExhausted;
use msp_resilience::timeout::{Elapsed, TimeoutLayer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[derive(Debug, thiserror::Error)]
#[error("tenant not found")]
struct UnknownTenant;

#[derive(Debug, thiserror::Error)]
#[error("database password is hunter2")]
struct Internal;

/// A route whose service fails with the error `make` builds.
fn failing(
    make: fn() -> BoxError,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError, Future = impl Send>
+ Clone {
    service_fn(move |_req: Request<Body>| async move { Err::<Response<Body>, _>(make()) })
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn fetch(addr: SocketAddr, path: &str) -> (StatusCode, Option<String>, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("uri");
    let res = client.get(uri).await.expect("request");
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        retry_after,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn route(
    make: fn() -> BoxError,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<http_body_util::Either<Body, http_body_util::Full<Bytes>>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    ServiceBuilder::new()
        .layer(HttpErrorLayer::new().map(|_: &UnknownTenant| {
            Problem::new(StatusCode::NOT_FOUND, "unknown_tenant", "no such tenant")
        }))
        .service(failing(make))
}

#[tokio::test]
async fn typed_errors_become_status_codes_in_an_axum_router() {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route_service("/timeout", route(|| Elapsed::new().into()))
        .route_service(
            "/open",
            route(|| CircuitOpen::new(Some(Duration::from_millis(2500))).into()),
        )
        .route_service("/open-forced", route(|| CircuitOpen::new(None).into()))
        .route_service("/budget", route(|| BudgetExhausted::new().into()))
        .route_service(
            "/limited",
            route(|| {
                RateLimited::new(Duration::from_millis(1200), 10, Duration::from_secs(5)).into()
            }),
        )
        .route_service("/full", route(|| BulkheadFull::queue_full().into()))
        .route_service("/tenant", route(|| UnknownTenant.into()))
        .route_service("/internal", route(|| Internal.into()))
        .route_service(
            "/wrapped",
            route(|| std::io::Error::other(Elapsed::new()).into()),
        );
    let addr = serve(app).await;

    assert_eq!(fetch(addr, "/ok").await.0, StatusCode::OK);

    let (status, _, body) = fetch(addr, "/timeout").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        body,
        r#"{"type":"about:blank","title":"Gateway Timeout","status":504,"detail":"request timed out","code":"timeout"}"#
    );

    let (status, retry_after, body) = fetch(addr, "/open").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("3"), "2.5 s rounds up");
    assert!(body.contains(r#""code":"circuit_open""#), "{body}");

    let (status, retry_after, _) = fetch(addr, "/open-forced").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after, None);

    let (status, _, body) = fetch(addr, "/budget").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains(r#""code":"retry_budget_exhausted""#),
        "{body}"
    );

    let (status, retry_after, body) = fetch(addr, "/limited").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after.as_deref(), Some("2"), "1.2 s rounds up");
    assert!(body.contains(r#""code":"rate_limited""#), "{body}");

    let (status, _, body) = fetch(addr, "/full").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(r#""code":"bulkhead_full""#), "{body}");

    let (status, _, body) = fetch(addr, "/tenant").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains(r#""code":"unknown_tenant""#), "{body}");

    let (status, _, body) = fetch(addr, "/internal").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !body.contains("hunter2") && !body.contains("password"),
        "unknown error text must not leak: {body}"
    );
    assert!(body.contains(r#""code":"internal""#), "{body}");

    let (status, _, _) = fetch(addr, "/wrapped").await;
    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "found in the source chain"
    );
}

#[tokio::test]
async fn a_whole_router_takes_the_stack_without_handle_error_layer() {
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HttpErrorLayer::new())
                .layer(TimeoutLayer::new(Duration::from_millis(50))),
        );
    let addr = serve(app).await;
    let (status, _, body) = fetch(addr, "/fast").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fast"));
    let (status, _, _) = fetch(addr, "/hang").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn unknown_status_is_configurable() {
    let svc = ServiceBuilder::new()
        .layer(HttpErrorLayer::new().unknown_status(StatusCode::BAD_GATEWAY))
        .service(failing(|| "boom".into()));
    let res = svc
        .oneshot(Request::new(Body::empty()))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_readiness_error_is_answered_on_the_next_call() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut svc = tower::Layer::layer(&HttpErrorLayer::new(), mock);
    // The inner service rejects in `poll_ready`, as a load shedder does.
    handle.send_error(CircuitOpen::new(None));
    let ready = svc.ready().await.expect("infallible");
    let res = tower::Service::call(ready, Request::new(Body::empty()))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}
