//! One aggregate, served per client type: rich web JSON, compact mobile
//! JSON (filtered, no nulls, pagination default, thumbnails), MessagePack
//! and CBOR for IoT (decoded here), `?fields=` projection, `Vary` and the
//! per-client cache key.

mod bff_common;

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use bff_common::{bytes, j, json, query_param, serve};
use msp_gateway::Body;
use msp_gateway::bff::{Aggregate, BackendConfig, ClientProfile, Format, ThumbnailRule};
use msp_gateway::proxy::ProxyClient;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn product_page() -> Aggregate {
    let app = Router::new()
        .route(
            "/products/{id}",
            get(|| async {
                j(json!({
                    "id": 3, "name": "Lamp", "description": "A long text", "discontinued": null,
                    "image": "https://cdn.example/images/lamp.jpg",
                    "specs": {"watts": 40, "lumen": 470},
                }))
            }),
        )
        .route(
            "/reviews",
            get(|RawQuery(q): RawQuery| async move {
                let limit: usize = query_param(q.as_deref(), "limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                let all: Vec<Value> = (1..=5)
                    .map(|i| json!({"stars": i, "author": {"name": format!("u{i}"), "avatar": format!("https://cdn.example/images/u{i}.png")}}))
                    .collect();
                j(json!(all.into_iter().take(limit).collect::<Vec<_>>()))
            }),
        );
    let addr = serve(app).await;
    Aggregate::builder("product-page")
        .path("/products/{id}")
        .backend(BackendConfig::new("product", format!("http://{addr}/products/{{id}}")).required())
        .backend(
            BackendConfig::new(
                "reviews",
                format!("http://{addr}/reviews?limit={{query.limit}}"),
            )
            .group("reviews"),
        )
        .profile(
            "mobile",
            ClientProfile::new()
                .deny(["description", "specs"])
                .omit_nulls()
                .query_default("limit", "2")
                .thumbnail(ThumbnailRule::new(
                    ["image", "reviews.author.avatar"],
                    "/images/",
                    "/images/thumb/",
                )),
        )
        .profile(
            "iot",
            ClientProfile::new()
                .allow(["id", "specs.watts"])
                .format(Format::Cbor),
        )
        .client(ProxyClient::new())
        .build()
        .expect("test value")
}

fn request(path: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).expect("test value")
}

#[tokio::test]
async fn web_gets_everything() {
    let agg = product_page().await;
    let res = agg
        .oneshot(request("/products/3?limit=5", &[("x-client-type", "web")]))
        .await
        .expect("test value");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["vary"], "accept, x-client-type");
    assert_eq!(res.headers()["x-client-type"], "web");
    let body = json(res).await;
    assert_eq!(body["description"], "A long text");
    assert_eq!(body["discontinued"], Value::Null);
    assert_eq!(body["image"], "https://cdn.example/images/lamp.jpg");
    assert_eq!(body["reviews"].as_array().expect("test value").len(), 5);
}

#[tokio::test]
async fn mobile_gets_compact_json_with_thumbnails_and_a_page_default() {
    let agg = product_page().await;
    let res = agg
        .oneshot(request("/products/3", &[("x-client-type", "Mobile")]))
        .await
        .expect("test value");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        json(res).await,
        json!({
            "id": 3, "name": "Lamp",
            "image": "https://cdn.example/images/thumb/lamp.jpg",
            "reviews": [
                {"stars": 1, "author": {"name": "u1", "avatar": "https://cdn.example/images/thumb/u1.png"}},
                {"stars": 2, "author": {"name": "u2", "avatar": "https://cdn.example/images/thumb/u2.png"}},
            ],
        })
    );
}

#[tokio::test]
async fn iot_gets_cbor_by_profile_and_messagepack_by_accept() {
    let agg = product_page().await;
    // The IoT profile's format: CBOR.
    let res = agg
        .clone()
        .oneshot(request("/products/3", &[("x-client-type", "iot")]))
        .await
        .expect("test value");
    assert_eq!(res.headers()["content-type"], "application/cbor");
    let body: Value = ciborium::from_reader(&bytes(res).await[..]).expect("test value");
    assert_eq!(body, json!({"id": 3, "specs": {"watts": 40}}));
    // Accept asks for MessagePack.
    let res = agg
        .clone()
        .oneshot(request(
            "/products/3",
            &[("x-client-type", "iot"), ("accept", "application/msgpack")],
        ))
        .await
        .expect("test value");
    assert_eq!(res.headers()["content-type"], "application/msgpack");
    let body: Value = rmp_serde::from_slice(&bytes(res).await).expect("test value");
    assert_eq!(body, json!({"id": 3, "specs": {"watts": 40}}));
    // No client type named: an Accept of CBOR negotiates the IoT profile.
    let res = agg
        .oneshot(request("/products/3", &[("accept", "application/cbor")]))
        .await
        .expect("test value");
    assert_eq!(res.headers()["x-client-type"], "iot");
    let body: Value = ciborium::from_reader(&bytes(res).await[..]).expect("test value");
    assert_eq!(body, json!({"id": 3, "specs": {"watts": 40}}));
}

#[tokio::test]
async fn fields_projects_the_response() {
    let agg = product_page().await;
    let res = agg
        .clone()
        .oneshot(request(
            "/products/3?fields=name,specs.lumen,reviews.stars&limit=2",
            &[],
        ))
        .await
        .expect("test value");
    assert_eq!(
        json(res).await,
        json!({"name": "Lamp", "specs": {"lumen": 470}, "reviews": [{"stars": 1}, {"stars": 2}]})
    );
    let res = agg
        .oneshot(request("/products/3?fields=a..b", &[]))
        .await
        .expect("test value");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn unknown_clients_and_unacceptable_formats_are_refused() {
    let agg = product_page().await;
    let res = agg
        .clone()
        .oneshot(request("/products/3", &[("x-client-type", "fridge")]))
        .await
        .expect("test value");
    assert_eq!(res.status(), 400);
    let res = agg
        .clone()
        .oneshot(request("/products/3", &[("accept", "text/html")]))
        .await
        .expect("test value");
    assert_eq!(res.status(), 406);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn cache_keys_differ_per_client_type_and_format() {
    let agg = product_page().await;
    let key = |h: &[(&str, &str)]| agg.cache_key(&request("/products/3?limit=1", h));
    let web = key(&[]).expect("test value");
    let mobile = key(&[("x-client-type", "mobile")]).expect("test value");
    let iot_cbor = key(&[("x-client-type", "iot")]).expect("test value");
    let iot_msgpack =
        key(&[("x-client-type", "iot"), ("accept", "application/msgpack")]).expect("test value");
    assert_eq!(web, "product-page|web|application/json|/products/3?limit=1");
    let all = [&web, &mobile, &iot_cbor, &iot_msgpack];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(key(&[("x-client-type", "fridge")]), None);
}

#[tokio::test]
async fn a_route_can_fix_the_client_type() {
    let app = Router::new().route(
        "/p",
        get(|| async { j(json!({"id": 1, "description": "long", "note": null})) }),
    );
    let addr = serve(app).await;
    let agg = Aggregate::builder("mobile-only")
        .path("/m")
        .client_type("mobile")
        .backend(BackendConfig::new("p", format!("http://{addr}/p")).required())
        .profile(
            "mobile",
            ClientProfile::new().deny(["description"]).omit_nulls(),
        )
        .client(ProxyClient::new())
        .build()
        .expect("aggregate");
    // The header is ignored: the route decides, so only Accept varies.
    let res = agg
        .oneshot(request("/m", &[("x-client-type", "web")]))
        .await
        .expect("infallible");
    assert_eq!(res.headers()["vary"], "accept");
    assert_eq!(res.headers()["x-client-type"], "mobile");
    assert_eq!(json(res).await, json!({"id": 1}));
}
