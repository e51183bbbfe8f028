//! The test service of the W3C Trace Context test suite (w3c/trace-context,
//! `test/`), built from msp-core's two layers.
//!
//! The harness POSTs a JSON list of `{"url": .., "arguments": ..}` to
//! `/test`; for each element the service POSTs `arguments` (as JSON) to
//! `url`. [`TraceContextLayer`] extracts the harness's `traceparent` /
//! `tracestate`, and [`PropagateTraceContextLayer`] on the HTTP client sends
//! the context on, with a new parent id per call.
//!
//! ```text
//! cargo run -p msp-core --example w3c_test_service -- 127.0.0.1:5000
//! # in w3c/trace-context/test:
//! STRICT_LEVEL=2 python3 test.py http://127.0.0.1:5000/test
//! ```

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::observe::{PropagateTraceContext, PropagateTraceContextLayer, TraceContextLayer};
use serde::Deserialize;
use tower::{ServiceBuilder, ServiceExt};

type HttpClient = PropagateTraceContext<Client<HttpConnector, Full<Bytes>>>;

#[derive(Debug, Deserialize)]
struct Action {
    url: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

async fn test(
    client: HttpClient,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let actions: Vec<Action> = match serde_json::from_slice(&body) {
        Ok(actions) => actions,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json,
                serde_json::json!({"error": e.to_string()}).to_string(),
            );
        }
    };
    for action in actions {
        let arguments = serde_json::to_vec(&action.arguments).unwrap_or_else(|_| b"[]".to_vec());
        let request = match Request::post(&action.url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(arguments)))
        {
            Ok(request) => request,
            Err(e) => {
                eprintln!("bad url {:?}: {e}", action.url);
                continue;
            }
        };
        // The call inherits the request's trace context (the task's current
        // one, set by `TraceContextLayer`).
        match client.clone().oneshot(request).await {
            Ok(response) => {
                let _ = response.into_body().collect().await;
            }
            Err(e) => eprintln!("callback to {} failed: {e}", action.url),
        }
    }
    (StatusCode::OK, json, "{}".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5000".to_owned());
    let client: HttpClient = ServiceBuilder::new()
        .layer(PropagateTraceContextLayer::new())
        .service(Client::builder(TokioExecutor::new()).build(HttpConnector::new()));
    let app = Router::new()
        .route("/test", post(move |body: Bytes| test(client.clone(), body)))
        .layer(TraceContextLayer::new());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("w3c test service on http://{}/test", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
