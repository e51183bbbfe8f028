//! Test helpers for the gateway's end-to-end tests: real axum backends and
//! a real gateway on loopback.
#![allow(dead_code, unreachable_pub)]

use axum::Router;
use axum::extract::Request;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_gateway::Gateway;
use msp_gateway::config::GatewayConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// A bound on every wait in these tests: a hang fails instead of blocking.
pub const BOUND: Duration = Duration::from_secs(20);

/// A real axum service on 127.0.0.1:0.
///
/// Any method and path answers `200` with `"{name} {METHOD} {path?query}"`,
/// except paths ending in `/slow` (reported on `arrived`, held until a
/// permit is added to `release`) and, for a failing backend, everything
/// (`500`).
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub arrived: mpsc::UnboundedReceiver<String>,
    pub release: Arc<Semaphore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub async fn backend(name: &'static str) -> Backend {
    spawn_backend(name, StatusCode::OK).await
}

pub async fn failing_backend(name: &'static str) -> Backend {
    spawn_backend(name, StatusCode::INTERNAL_SERVER_ERROR).await
}

async fn spawn_backend(name: &'static str, status: StatusCode) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a backend");
    let addr = listener.local_addr().expect("backend address");
    let hits = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (tx, arrived) = mpsc::unbounded_channel();
    let app = {
        let hits = hits.clone();
        let release = release.clone();
        Router::new().fallback(move |req: Request| {
            let hits = hits.clone();
            let release = release.clone();
            let tx = tx.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                if req.uri().path().ends_with("/slow") {
                    let _ = tx.send(target.clone());
                    let permit = release.acquire().await.expect("semaphore open");
                    permit.forget();
                }
                (status, format!("{name} {} {target}", req.method()))
            }
        })
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Backend {
        name,
        addr,
        hits,
        arrived,
        release,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Backend {
    /// Stops the service: no longer accepting, idle connections closed,
    /// the listener gone when this returns.
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(BOUND, task)
                .await
                .expect("backend stops")
                .expect("backend task");
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A gateway built from `yaml`, served on 127.0.0.1:0.
pub async fn gateway(yaml: &str) -> (Gateway, SocketAddr) {
    let config = GatewayConfig::from_yaml(yaml, "test").expect("valid test config");
    serve(Gateway::from_config(config).await.expect("gateway builds")).await
}

pub async fn serve(gateway: Gateway) -> (Gateway, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gateway");
    let addr = listener.local_addr().expect("gateway address");
    tokio::spawn(gateway.clone().serve(listener));
    (gateway, addr)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A pooled client to the gateway.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let res = tokio::time::timeout(BOUND, self.client.request(req))
            .await
            .expect("answer in time")
            .expect("gateway answers");
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(BOUND, body.collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[]).await
    }
}

/// The seed's three routes, exactly as the seed document writes them.
pub const SEED_ROUTES: &str = r#"routes:
  - path: "/api/users/*"
    service: "user-service"
    methods: ["GET", "POST", "PUT", "DELETE"]
    auth_required: true
    rate_limit: 1000/hour
  - path: "/api/products/*"
    service: "product-service"
    methods: ["GET"]
    auth_required: false
    rate_limit: 5000/hour
    cache_ttl: 300
  - path: "/api/orders/*"
    service: "order-service"
    methods: ["GET", "POST"]
    auth_required: true
    rate_limit: 500/hour
"#;

/// The API key of the test consumer `demo-app`.
pub const API_KEY: &str = "demo-key";

/// The seed routes with `services:` pointing at the three backends and an
/// API-key provider.
pub fn seed_yaml(users: SocketAddr, products: SocketAddr, orders: SocketAddr) -> String {
    format!(
        r#"{SEED_ROUTES}
services:
  user-service:
    instances: ["{users}"]
  product-service:
    instances: ["{products}"]
  order-service:
    instances: ["{orders}"]
auth:
  providers:
    keys:
      api_key:
        consumers:
          - name: demo-app
            key_sha256: "{}"
"#,
        msp_gateway::auth::hash_api_key(API_KEY)
    )
}
