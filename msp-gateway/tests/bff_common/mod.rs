//! Shared by the BFF tests: axum backends on loopback and response decoding.

#![allow(dead_code, unreachable_pub)]

use axum::Router;
use http_body_util::BodyExt;
use msp_gateway::Body;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// Serves `app` on 127.0.0.1:0.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test value");
    let addr = listener.local_addr().expect("test value");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test value");
    listener.local_addr().expect("test value")
}

/// The response's body bytes.
pub async fn bytes(res: http::Response<Body>) -> bytes::Bytes {
    res.into_body()
        .collect()
        .await
        .expect("test value")
        .to_bytes()
}

/// The response's body as JSON.
pub async fn json(res: http::Response<Body>) -> Value {
    serde_json::from_slice(&bytes(res).await).expect("test value")
}

/// A GET request.
pub fn get(path: &str) -> http::Request<Body> {
    http::Request::get(path)
        .header("host", "gw")
        .body(Body::empty())
        .expect("test value")
}

/// A JSON response (the dev build of axum has no `json` feature).
pub fn j(v: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The value of query parameter `name` in a raw query.
pub fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    raw?.split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Users, orders and reviews; `/slow` never answers.
pub async fn shop() -> SocketAddr {
    let app = Router::new()
        .route(
            "/users/{id}",
            axum::routing::get(|axum::extract::Path(id): axum::extract::Path<u32>| async move {
                j(json!({"id": id, "name": "Ada", "email": "ada@example.com", "password_hash": "x"}))
            }),
        )
        .route(
            "/orders",
            axum::routing::get(|axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                j(json!([{"id": 1, "user": query_param(q.as_deref(), "user"), "total": 10}]))
            }),
        )
        .route(
            "/reviews/{id}",
            axum::routing::get(|axum::extract::Path(id): axum::extract::Path<u32>| async move { j(json!({"user": id, "stars": [5, 4]})) }),
        )
        .route("/slow", axum::routing::get(std::future::pending::<axum::response::Response>))
        .route("/missing", axum::routing::get(|| async { http::StatusCode::NOT_FOUND }));
    serve(app).await
}
