//! DiscoveryClient failures as a caller sees them: typed errors with a
//! [`TransportKind`], msp's own [`ResponseBody`] failing mid-body, and
//! RFC 9457 problem answers behind msp-core's `HttpErrorLayer` in a real
//! axum router, without any mapping code.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use msp_core::http::{HttpErrorLayer, ToProblem};
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::balance::{BalanceConfig, Strategy};
use msp_discovery::client::{DiscoveryClient, DiscoveryError, ResponseBody, TransportKind};
use msp_discovery::registry::MemoryRegistry;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceBuilder, ServiceExt};

fn orders(addr: SocketAddr, id: &str) -> Instance {
    Instance::builder(ServiceName::new("orders").unwrap(), addr)
        .id(InstanceId::new(id).unwrap())
        .build()
        .unwrap()
}

/// A TCP server answering every connection with `answer` (raw bytes), then
/// closing it.
async fn raw_server(answer: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Read the request head (small, one read is enough here).
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(answer).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
    // dropped here: connections are refused
}

fn client(registry: MemoryRegistry) -> DiscoveryClient<Empty<Bytes>> {
    DiscoveryClient::builder(registry)
        .balance(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .without_outlier_detection()
                .build()
                .unwrap(),
        )
        .build()
}

fn get_req(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

#[tokio::test]
async fn a_body_cut_short_is_a_body_transport_error_naming_the_instance() {
    let addr = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part").await;
    let registry = MemoryRegistry::new();
    registry.insert(orders(addr, "cut")).unwrap();
    let mut client = client(registry);
    let res: http::Response<ResponseBody> = client
        .ready()
        .await
        .unwrap()
        .call(get_req("http://orders/"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let err: DiscoveryError = res.into_body().collect().await.unwrap_err();
    match &err {
        DiscoveryError::Transport {
            service,
            instance,
            addr: at,
            kind,
            ..
        } => {
            assert_eq!(service.as_str(), "orders");
            assert_eq!(instance.as_str(), "cut");
            assert_eq!(*at, addr);
            assert_eq!(*kind, TransportKind::Body);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_connect());
    assert_eq!(err.status_code(), StatusCode::BAD_GATEWAY);
    // The cause stays available as a source, behind a boxed error.
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_malformed_response_is_a_request_transport_error_and_a_502() {
    let addr = raw_server(b"this is not HTTP\r\n\r\n").await;
    let registry = MemoryRegistry::new();
    registry.insert(orders(addr, "garbage")).unwrap();
    let mut client = client(registry);
    let err = client
        .ready()
        .await
        .unwrap()
        .call(get_req("http://orders/"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::Transport {
                kind: TransportKind::Request,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_connect(), "the request was sent");
    let problem = err.to_problem();
    assert_eq!(problem.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem.code(), "bad_gateway");
    // Safe to show: names the service, not the instance's address.
    assert!(!problem.detail().contains(&addr.to_string()));
}

/// A router whose `/orders/*` routes go through a DiscoveryClient to the
/// `orders` service, behind one `HttpErrorLayer` (as a gateway does).
fn router(registry: MemoryRegistry) -> Router {
    let client = DiscoveryClient::builder(registry)
        .balance(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .without_outlier_detection()
                .build()
                .unwrap(),
        )
        .build::<Body>();
    let upstream = ServiceBuilder::new()
        .layer(HttpErrorLayer::new())
        .map_request(|mut req: Request<Body>| {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("http://orders{path}").parse().unwrap();
            req
        })
        .service(client);
    Router::new().route_service("/orders/{*rest}", upstream)
}

async fn problem(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let res = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(content_type, "application/problem+json", "{body:?}");
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn no_instances_is_a_503_problem_behind_http_error_layer() {
    let (status, body) = problem(router(MemoryRegistry::new()), "/orders/1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], 503);
    assert_eq!(body["code"], "no_instances");
    assert_eq!(body["title"], "Service Unavailable");
}

#[tokio::test]
async fn a_refused_connection_is_a_503_problem_revealing_no_address() {
    let dead = dead_addr().await;
    let registry = MemoryRegistry::new();
    registry.insert(orders(dead, "dead")).unwrap();
    let (status, body) = problem(router(registry), "/orders/1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "upstream_unavailable");
    let detail = body["detail"].as_str().unwrap();
    assert!(!detail.contains(&dead.to_string()), "{detail}");
    assert!(!detail.contains("dead"), "no instance id either: {detail}");
}

#[tokio::test]
async fn a_malformed_upstream_answer_is_a_502_problem() {
    let addr = raw_server(b"nonsense\r\n\r\n").await;
    let registry = MemoryRegistry::new();
    registry.insert(orders(addr, "garbage")).unwrap();
    let (status, body) = problem(router(registry), "/orders/1").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["code"], "bad_gateway");
}

#[tokio::test]
async fn a_live_instance_answers_through_the_same_router() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = Router::new().route("/orders/1", get(|| async { "order 1" }));
        let _ = axum::serve(listener, app).await;
    });
    let registry = MemoryRegistry::new();
    registry.insert(orders(addr, "live")).unwrap();
    let res = router(registry)
        .oneshot(Request::get("/orders/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "order 1");
}
