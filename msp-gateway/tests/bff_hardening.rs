//! Aggregates against hostile input: `?fields=` deep or wide enough to
//! exhaust the stack (400 `bad_fields`, and the aggregate keeps serving),
//! `.` / `..` substituted into a backend's path from the query, a path
//! parameter or a backend's JSON (refused: the backend never sees another
//! path), and `/` in a value (always `%2F`). A recording backend shows the
//! exact path each call reached.

mod bff_common;

use axum::Router;
use axum::routing::get;
use bff_common::{get as request, j, json, serve};
use http::Uri;
use msp_gateway::bff::{Aggregate, AggregateError, BackendConfig, ClientProfile};
use msp_gateway::proxy::ProxyClient;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// Every path the backend received, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A backend answering `{"path": …}` on any path (and `{"next": ".."}` on
/// `/start`), recording each path as received.
async fn recording_backend() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new()
        .route(
            "/start",
            get(|| async { j(json!({"next": "..", "ok": "x"})) }),
        )
        .fallback(move |uri: Uri| {
            let record = record.clone();
            async move {
                let path = uri.path().to_owned();
                record.lock().expect("lock").push(path.clone());
                j(json!({"path": path, "deep": {"a": {"b": 1}}, "other": 2}))
            }
        });
    (serve(app).await, seen)
}

fn aggregate(path: &str, backends: Vec<BackendConfig>) -> Aggregate {
    let mut b = Aggregate::builder("agg").path(path);
    for backend in backends {
        b = b.backend(backend);
    }
    b.client(ProxyClient::new())
        .build()
        .expect("valid aggregate")
}

async fn call(agg: &Aggregate, path: &str) -> (u16, serde_json::Value) {
    let res = agg.clone().oneshot(request(path)).await.expect("answer");
    let status = res.status().as_u16();
    (status, json(res).await)
}

fn taken(seen: &Seen) -> Vec<String> {
    std::mem::take(&mut *seen.lock().expect("lock"))
}

#[tokio::test]
async fn dot_segments_from_the_query_never_reach_another_backend_path() {
    let (addr, seen) = recording_backend().await;
    let agg = aggregate(
        "/users",
        vec![
            BackendConfig::new("orders", format!("http://{addr}/users/{{query.id}}/orders"))
                .required(),
        ],
    );
    let (status, body) = call(&agg, "/users?id=7").await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/users/7/orders");
    assert_eq!(taken(&seen), ["/users/7/orders"]);

    for bad in ["..", "%2e%2e", "%2E%2E", ".", "%2e"] {
        let (status, body) = call(&agg, &format!("/users?id={bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "bad_value", "{bad}");
        assert!(taken(&seen).is_empty(), "{bad} reached the backend");
    }

    // A `/` in a value is data, never a path separator; dots inside a
    // segment are just dots.
    let (status, _) = call(&agg, "/users?id=..%2F..%2Fadmin").await;
    assert_eq!(status, 200);
    let (status, _) = call(&agg, "/users?id=a.b").await;
    assert_eq!(status, 200);
    assert_eq!(
        taken(&seen),
        ["/users/..%2F..%2Fadmin/orders", "/users/a.b/orders"]
    );
}

#[tokio::test]
async fn dot_segments_from_a_path_parameter_or_a_backend_value_are_refused() {
    let (addr, seen) = recording_backend().await;
    let agg = aggregate(
        "/u/{id}",
        vec![BackendConfig::new("orders", format!("http://{addr}/users/{{id}}/orders")).required()],
    );
    let (status, body) = call(&agg, "/u/%2E%2E").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "bad_value");
    assert!(taken(&seen).is_empty());

    // From a backend's JSON: the backend's fault, 502; the second call
    // is never made.
    let agg = aggregate(
        "/chain",
        vec![
            BackendConfig::new("start", format!("http://{addr}/start")).required(),
            BackendConfig::new("next", format!("http://{addr}/items/{{start.next}}/admin"))
                .required(),
        ],
    );
    let (status, body) = call(&agg, "/chain").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "backend_bad_value");
    assert!(taken(&seen).is_empty());
}

#[tokio::test]
async fn fields_deep_or_wide_are_400_and_the_aggregate_keeps_serving() {
    let (addr, _seen) = recording_backend().await;
    let agg = aggregate(
        "/p",
        vec![BackendConfig::new("p", format!("http://{addr}/p")).required()],
    );
    let deep = vec!["a"; 10_000].join(".");
    let (status, body) = call(&agg, &format!("/p?fields={deep}")).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "bad_fields");
    assert!(
        body["detail"].as_str().expect("detail").contains("32"),
        "{body}"
    );

    let wide = (0..1_000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let (status, body) = call(&agg, &format!("/p?fields={wide}")).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "bad_fields");
    assert!(
        body["detail"].as_str().expect("detail").contains("64"),
        "{body}"
    );

    // At the limits it works.
    let at_depth = vec!["deep"; 32].join(".");
    let at_width = (0..63)
        .map(|i| format!("f{i}"))
        .chain(["other".to_owned()])
        .collect::<Vec<_>>()
        .join(",");
    let (status, body) = call(&agg, &format!("/p?fields={at_depth}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"deep": {}}));
    let (status, body) = call(&agg, &format!("/p?fields={at_width}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"other": 2}));
    let (status, body) = call(&agg, "/p?fields=deep.a").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"deep": {"a": {"b": 1}}}));
}

#[tokio::test]
async fn config_field_paths_deeper_than_the_cap_are_build_errors() {
    let deep = vec!["a"; 33].join(".");
    let err = Aggregate::builder("agg")
        .path("/p")
        .backend(BackendConfig::new("p", "http://svc/p").allow([deep.as_str()]))
        .client(ProxyClient::new())
        .build()
        .expect_err("too deep");
    let AggregateError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problems.len(), 1, "{err}");
    assert!(problems[0].field().contains("allow"), "{err}");
    assert!(problems[0].message().contains("32"), "{err}");

    // A profile's default `fields` is held to the request's limits.
    let wide = (0..65)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let err = Aggregate::builder("agg")
        .path("/p")
        .backend(BackendConfig::new("p", "http://svc/p"))
        .profile("mobile", ClientProfile::new().query_default("fields", wide))
        .client(ProxyClient::new())
        .build()
        .expect_err("too wide");
    let AggregateError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].field(), "clients.mobile.query_defaults.fields");
    assert!(problems[0].message().contains("64"), "{err}");
}
