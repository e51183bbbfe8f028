//! The error vocabulary across crates: behind ONE msp-core
//! `HttpErrorLayer` (no mapping configured), a real axum router on loopback
//! answers each crate's own error with its RFC 9457 problem — discovery's
//! `NoInstances`, resilience's timeout, rate limit, open breaker and full
//! bulkhead — and an unknown error with an opaque 500. Each error is
//! produced by the real component (a `DiscoveryClient` over an empty
//! registry, a `TimeoutLayer`, a `RateLimitLayer`, a tripped
//! `CircuitBreakerLayer`, a full `BulkheadLayer`), and each type registered
//! itself when built; the requests come from a real HTTP client.

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_core::BoxError;
use msp_core::http::HttpErrorLayer;
use msp_discovery::client::DiscoveryClient;
use msp_discovery::registry::MemoryRegistry;
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use msp_resilience::rate_limit::{Quota, RateLimitLayer, RateLimiter};
use msp_resilience::timeout::TimeoutLayer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

type Fallible = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// An internal error whose text must never reach a client.
#[derive(Debug, thiserror::Error)]
#[error("query failed on postgres://admin:hunter2@10.0.0.5:5432/orders")]
struct DatabaseDown;

fn ok() -> Response<Body> {
    Response::new(Body::from("ok"))
}

/// The test app: one fallible service per case, dispatched by path, with
/// one `HttpErrorLayer` in front of all of them, mounted in an axum router.
struct App {
    addr: SocketAddr,
    /// The bulkhead's only slot is taken: a message per call entering it.
    bulkhead_entered: mpsc::UnboundedReceiver<()>,
    /// Lets the calls holding the bulkhead finish.
    bulkhead_release: Arc<Notify>,
}

impl App {
    async fn start() -> App {
        let mut routes: HashMap<&'static str, Fallible> = HashMap::new();

        // msp-discovery: a client over an empty registry.
        let client = DiscoveryClient::builder(MemoryRegistry::new()).build::<Body>();
        routes.insert(
            "/orders",
            BoxCloneSyncService::new(
                client
                    .map_request(|mut req: Request<Body>| {
                        *req.uri_mut() = http::Uri::from_static("http://orders/orders");
                        req
                    })
                    .map_response(|res| res.map(Body::new))
                    .map_err(BoxError::from),
            ),
        );

        // msp-resilience timeout around a call that never answers.
        routes.insert(
            "/slow",
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(TimeoutLayer::new(Duration::from_millis(50)))
                    .service(service_fn(|_: Request<Body>| async {
                        std::future::pending::<()>().await;
                        Ok::<_, BoxError>(ok())
                    })),
            ),
        );

        // msp-resilience rate limit: one request per hour.
        let quota = Quota::new(1, Duration::from_secs(3600)).expect("valid quota");
        routes.insert(
            "/limited",
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(RateLimitLayer::new(RateLimiter::new(quota)))
                    .service(service_fn(|_: Request<Body>| async {
                        Ok::<_, BoxError>(ok())
                    })),
            ),
        );

        // msp-resilience breaker that opens on the first failure, for 30 s.
        let breaker = CircuitBreakerConfig::builder()
            .name("inventory")
            .count_window(2)
            .minimum_calls(1)
            .failure_rate(50.0)
            .open_duration(Duration::from_secs(30))
            .build()
            .expect("valid breaker config");
        routes.insert(
            "/inventory",
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(CircuitBreakerLayer::new(breaker))
                    .service(service_fn(|_: Request<Body>| async {
                        Err::<Response<Body>, BoxError>(
                            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
                        )
                    })),
            ),
        );

        // msp-resilience bulkhead with one slot and no queue; the call
        // holding it waits until released.
        let (entered_tx, bulkhead_entered) = mpsc::unbounded_channel();
        let bulkhead_release = Arc::new(Notify::new());
        let release = bulkhead_release.clone();
        let bulkhead = BulkheadConfig::builder()
            .max_concurrent(1)
            .max_queue(0)
            .build()
            .expect("valid bulkhead config");
        routes.insert(
            "/reports",
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(BulkheadLayer::new(bulkhead))
                    .service(service_fn(move |_: Request<Body>| {
                        let entered = entered_tx.clone();
                        let release = release.clone();
                        async move {
                            let released = release.notified();
                            let _ = entered.send(());
                            released.await;
                            Ok::<_, BoxError>(ok())
                        }
                    })),
            ),
        );

        // An error no crate knows.
        routes.insert(
            "/internal",
            BoxCloneSyncService::new(service_fn(|_: Request<Body>| async {
                Err::<Response<Body>, BoxError>(Box::new(DatabaseDown))
            })),
        );

        let routes = Arc::new(routes);
        let dispatch = service_fn(move |req: Request<Body>| {
            let svc = routes.get(req.uri().path()).cloned();
            async move {
                match svc {
                    Some(svc) => svc.oneshot(req).await,
                    None => Ok(Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::empty())?),
                }
            }
        });
        let app = Router::new().fallback_service(
            ServiceBuilder::new()
                .layer(HttpErrorLayer::new())
                .service(dispatch),
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        App {
            addr,
            bulkhead_entered,
            bulkhead_release,
        }
    }
}

/// What a client sees.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    retry_after: Option<u64>,
    body: String,
    problem: serde_json::Value,
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("uri");
    let res = client.get(uri).await.expect("request");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let content_type = header("content-type");
    let retry_after = header("retry-after").map(|v| v.parse().expect("Retry-After in seconds"));
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let problem = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        content_type,
        retry_after,
        body,
        problem,
    }
}

/// The answer is an RFC 9457 problem with this status and code.
fn assert_problem(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(
        a.content_type.as_deref(),
        Some("application/problem+json"),
        "{a:?}"
    );
    assert_eq!(a.problem["type"], "about:blank", "{a:?}");
    assert_eq!(a.problem["status"], status.as_u16(), "{a:?}");
    assert_eq!(
        a.problem["title"],
        status.canonical_reason().expect("known status"),
        "{a:?}"
    );
    assert_eq!(a.problem["code"], code, "{a:?}");
    assert!(a.problem["detail"].is_string(), "{a:?}");
}

#[tokio::test]
async fn no_instances_from_discovery_is_503_no_instances() {
    let app = App::start().await;
    let a = get(app.addr, "/orders").await;
    assert_problem(&a, StatusCode::SERVICE_UNAVAILABLE, "no_instances");
    assert_eq!(a.retry_after, None);
}

#[tokio::test]
async fn a_timeout_is_504() {
    let app = App::start().await;
    let a = get(app.addr, "/slow").await;
    assert_problem(&a, StatusCode::GATEWAY_TIMEOUT, "timeout");
}

#[tokio::test]
async fn a_rate_limit_is_429_with_retry_after() {
    let app = App::start().await;
    assert_eq!(get(app.addr, "/limited").await.status, StatusCode::OK);
    let a = get(app.addr, "/limited").await;
    assert_problem(&a, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let after = a.retry_after.expect("Retry-After");
    assert!(
        (1..=3600).contains(&after),
        "next request in about an hour: {after}"
    );
}

#[tokio::test]
async fn an_open_breaker_is_503_with_retry_after() {
    let app = App::start().await;
    // The failure that trips the breaker is an unknown error: an opaque 500.
    let first = get(app.addr, "/inventory").await;
    assert_problem(&first, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    let a = get(app.addr, "/inventory").await;
    assert_problem(&a, StatusCode::SERVICE_UNAVAILABLE, "circuit_open");
    let after = a.retry_after.expect("Retry-After");
    assert!((1..=30).contains(&after), "open time left: {after}");
}

#[tokio::test]
async fn a_full_bulkhead_is_503() {
    let mut app = App::start().await;
    let addr = app.addr;
    let holder = tokio::spawn(async move { get(addr, "/reports").await });
    app.bulkhead_entered
        .recv()
        .await
        .expect("the first call holds the only slot");

    let a = get(app.addr, "/reports").await;
    assert_problem(&a, StatusCode::SERVICE_UNAVAILABLE, "bulkhead_full");
    assert_eq!(a.retry_after, None);

    app.bulkhead_release.notify_waiters();
    let first = holder.await.expect("holder");
    assert_eq!(first.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_error_is_500_revealing_nothing() {
    let app = App::start().await;
    let a = get(app.addr, "/internal").await;
    assert_problem(&a, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    for secret in [
        "hunter2",
        "admin",
        "10.0.0.5",
        "postgres",
        "5432",
        "query",
        "DatabaseDown",
    ] {
        assert!(!a.body.contains(secret), "{secret} leaked: {}", a.body);
    }
    assert_eq!(
        a.problem.as_object().map(|o| o.len()),
        Some(5),
        "only type, title, status, detail, code: {}",
        a.body
    );
}
