//! Three small axum services — user, product and order — to try the
//! gateway with, on 127.0.0.1:3001, 3002 and 3003 (the instances of
//! `examples/gateway.yaml` and of the binary's embedded default).
//!
//! ```text
//! cargo run -p msp-gateway --example seed_services            # 3001-3003
//! cargo run -p msp-gateway --example seed_services -- 4001    # 4001-4003
//! ```
//!
//! Each answers JSON naming itself, so you can see where the gateway sent
//! a request: `GET /api/users/42` → `{"service":"user-service","id":"42",…}`.
//! `GET /api/*/slow` waits 5 s (try a reload while it runs).

use axum::Router;
use axum::extract::{Path, Request};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use std::time::Duration;

/// A JSON answer (axum's `Json` needs a feature this crate's tests do not).
fn json(value: Value) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
}

fn service(name: &'static str, collection: &'static str) -> Router {
    let echo = move |req: Request| async move {
        json(json!({
            "service": name,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "forwarded_for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            "request_id": req.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
        }))
    };
    let one = move |Path(id): Path<String>, req: Request| async move {
        if id == "slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        json(json!({
            "service": name,
            "method": req.method().as_str(),
            "id": id,
        }))
    };
    let list = move || async move {
        let items: Vec<Value> = (1..=3).map(|i| json!({ "id": i.to_string() })).collect();
        json(json!({ "service": name, collection: items }))
    };
    Router::new()
        .route(&format!("/api/{collection}"), get(list))
        .route(&format!("/api/{collection}/"), get(list))
        .route(
            &format!("/api/{collection}/{{id}}"),
            get(one).post(one).put(one).delete(one),
        )
        .fallback(echo)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse()?,
        None => 3001,
    };
    let services = [
        ("user-service", "users"),
        ("product-service", "products"),
        ("order-service", "orders"),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, collection)) in services.into_iter().enumerate() {
        let port = base + i as u16;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("{name} on http://127.0.0.1:{port}");
        tasks.spawn(async move { axum::serve(listener, service(name, collection)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
