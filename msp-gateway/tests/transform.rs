//! Per-route transforms end to end: a real gateway on loopback in front of
//! a recording axum backend that echoes the request headers it received
//! and answers the JSON (or other body) a test gives it.

mod common_gw;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::Request;
use bytes::Bytes;
use common_gw::{BOUND, Http, gateway};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_gateway::config::GatewayConfig;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the backend answers next.
#[derive(Clone)]
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

impl Reply {
    fn json(v: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            headers: Vec::new(),
            body: v.to_string(),
        }
    }
}

/// The recording backend: `/echo` answers the request headers as JSON
/// (`{name: [values]}`); `/stream/json` and `/stream/sse` send a first
/// chunk, then hold the body open until `release` is notified; `/chunks`
/// a chunked JSON body without `Content-Length`; anything else the current
/// [`Reply`].
struct Backend {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    release: Arc<Notify>,
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for name in h.keys() {
        let values: Vec<Value> = h
            .get_all(name)
            .iter()
            .map(|v| Value::String(v.to_str().unwrap_or("?").to_owned()))
            .collect();
        out.insert(name.as_str().to_owned(), Value::Array(values));
    }
    Value::Object(out)
}

/// The `/chunks` body: 40 chunks of a JSON array, 400+ bytes in all.
fn chunked_json() -> Vec<String> {
    let mut parts = vec!["[".to_owned()];
    for i in 0..40 {
        let sep = if i == 0 { "" } else { "," };
        parts.push(format!("{sep}{{\"id\":{i},\"secret\":1}}"));
    }
    parts.push("]".to_owned());
    parts
}

async fn backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reply = Arc::new(Mutex::new(Reply::json(json!({}))));
    let release = Arc::new(Notify::new());
    let app = {
        let reply = reply.clone();
        let release = release.clone();
        Router::new().fallback(move |req: Request| {
            let reply = reply.clone();
            let release = release.clone();
            async move {
                let path = req.uri().path().to_owned();
                let builder = http::Response::builder();
                match path.as_str() {
                    "/echo" => builder
                        .header("content-type", "application/json")
                        .header("server", "backend")
                        .header("x-upstream", "u1")
                        .header("x-old", "o1")
                        .header("x-old", "o2")
                        .body(AxumBody::from(headers_json(req.headers()).to_string())),
                    "/stream/json" | "/stream/sse" => {
                        let ct = if path.ends_with("json") {
                            "application/json"
                        } else {
                            "text/event-stream"
                        };
                        let first = futures_util::stream::once(async {
                            Ok::<_, std::io::Error>(Bytes::from_static(b"{\"first\":"))
                        });
                        let rest = futures_util::stream::once(async move {
                            release.notified().await;
                            Ok::<_, std::io::Error>(Bytes::from_static(b"true}"))
                        });
                        builder
                            .header("content-type", ct)
                            .body(AxumBody::from_stream(first.chain(rest)))
                    }
                    "/chunks" => {
                        let chunks = chunked_json()
                            .into_iter()
                            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
                        builder
                            .header("content-type", "application/json")
                            .body(AxumBody::from_stream(futures_util::stream::iter(chunks)))
                    }
                    _ => {
                        let r = reply.lock().expect("lock").clone();
                        let mut b = builder
                            .status(r.status)
                            .header("content-type", r.content_type);
                        for (k, v) in r.headers {
                            b = b.header(k, v);
                        }
                        b.body(AxumBody::from(r.body))
                    }
                }
                .expect("response")
            }
        })
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        addr,
        reply,
        release,
    }
}

/// One route `/*` to the backend with `route` (YAML lines indented for a
/// route) and a plain route `/plain/*` without transforms.
fn yaml(b: &Backend, route: &str) -> String {
    format!(
        "routes:\n  - path: \"/plain/*\"\n    service: backend\n    strip_prefix: true\n  - path: \"/*\"\n    service: backend\n{route}services:\n  backend:\n    instances: [\"{}\"]\n",
        b.addr
    )
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).expect("a JSON body")
}

fn values<'a>(h: &'a Value, name: &str) -> Vec<&'a str> {
    h[name]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn request_headers_reach_the_backend_as_configured() {
    let b = backend().await;
    let route = "    request_headers:\n      add: {x-tenant: shop}\n      set: {x-env: prod}\n      remove: [x-debug]\n      rename: {x-old: x-new}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    let http = Http::new(addr);
    let res = http
        .send(
            Method::GET,
            "/echo",
            &[
                ("x-tenant", "client"),
                ("x-env", "dev"),
                ("x-env", "qa"),
                ("x-debug", "1"),
                ("x-old", "a"),
                ("x-old", "b"),
                ("x-new", "stale"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = json_of(&res.body);
    // add appends, set replaces every value, remove drops, rename moves
    // every value (replacing the target's).
    assert_eq!(values(&seen, "x-tenant"), ["client", "shop"]);
    assert_eq!(values(&seen, "x-env"), ["prod"]);
    assert!(seen.get("x-debug").is_none(), "{seen}");
    assert!(seen.get("x-old").is_none(), "{seen}");
    assert_eq!(values(&seen, "x-new"), ["a", "b"]);
    // The gateway's own forwarding headers are still set.
    assert_eq!(values(&seen, "x-forwarded-for"), ["127.0.0.1"]);

    // The route without transforms forwards what the client sent.
    let res = http
        .send(
            Method::GET,
            "/plain/echo",
            &[("x-debug", "1"), ("x-old", "a")],
        )
        .await;
    let seen = json_of(&res.body);
    assert_eq!(values(&seen, "x-debug"), ["1"]);
    assert_eq!(values(&seen, "x-old"), ["a"]);
    assert!(seen.get("x-tenant").is_none());
}

#[tokio::test]
async fn response_headers_reach_the_client_as_configured() {
    let b = backend().await;
    let route = "    response_headers:\n      add: {x-upstream: gw}\n      set: {x-frame-options: DENY}\n      remove: [server]\n      rename: {x-old: x-renamed}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    let http = Http::new(addr);
    let res = http.get("/echo").await;
    assert_eq!(res.status, StatusCode::OK);
    let all = |n: &str| -> Vec<&str> {
        res.headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect()
    };
    assert_eq!(all("x-upstream"), ["u1", "gw"]);
    assert_eq!(all("x-frame-options"), ["DENY"]);
    assert!(all("server").is_empty());
    assert!(all("x-old").is_empty());
    assert_eq!(all("x-renamed"), ["o1", "o2"]);

    let res = http.get("/plain/echo").await;
    assert_eq!(res.headers["server"], "backend");
    assert_eq!(res.headers["x-old"], "o1");
    assert!(!res.headers.contains_key("x-frame-options"));
}

fn load_error(route: &str) -> String {
    let yaml = format!(
        "routes:\n  - path: \"/api/*\"\n    service: backend\n{route}services:\n  backend:\n    instances: [\"127.0.0.1:1\"]\n"
    );
    let err = GatewayConfig::from_yaml(&yaml, "t.yaml").expect_err("must be refused");
    err.to_string()
}

#[tokio::test]
async fn transforms_cannot_touch_hop_by_hop_forwarding_or_identity_headers() {
    for (route, field) in [
        (
            "    request_headers: {set: {connection: close}}\n",
            "request_headers.set.connection",
        ),
        (
            "    request_headers: {add: {X-Forwarded-For: 1.2.3.4}}\n",
            "request_headers.add.X-Forwarded-For",
        ),
        (
            "    request_headers: {remove: [forwarded]}\n",
            "request_headers.remove[0]",
        ),
        (
            "    request_headers: {set: {x-consumer: admin}}\n",
            "request_headers.set.x-consumer",
        ),
        (
            "    request_headers: {rename: {x-a: x-jwt-claim-role}}\n",
            "request_headers.rename.x-a",
        ),
        (
            "    request_headers: {set: {host: evil}}\n",
            "request_headers.set.host",
        ),
        (
            "    response_headers: {set: {transfer-encoding: chunked}}\n",
            "response_headers.set.transfer-encoding",
        ),
        (
            "    response_headers: {add: {content-length: \"3\"}}\n",
            "response_headers.add.content-length",
        ),
        (
            "    response_headers: {remove: [x-cache]}\n",
            "response_headers.remove[0]",
        ),
        (
            "    response_headers: {set: {\"bad name\": x}}\n",
            "response_headers.set.bad name",
        ),
        (
            "    response_headers: {set: {x-ok: \"a\\nb\"}}\n",
            "response_headers.set.x-ok",
        ),
        (
            "    response_json: {deny: [\"a..b\"]}\n",
            "response_json.deny[0]",
        ),
        (
            "    response_json: {rename: {a: b.c}}\n",
            "response_json.rename.a",
        ),
        ("    response_json: {}\n", "response_json"),
    ] {
        let err = load_error(route);
        assert!(err.contains(&format!("`{field}`")), "{route} -> {err}");
        assert!(
            err.contains("t.yaml:4:") || err.contains("t.yaml:5:"),
            "{err}"
        );
        assert!(err.contains("route #0 (/api/*)"), "{err}");
    }
    // Unknown keys are refused too.
    let err = load_error("    request_headers: {append: {x-a: b}}\n");
    assert!(err.contains("append"), "{err}");
}

#[tokio::test]
async fn response_json_allow_deny_rename_with_nested_paths_and_arrays() {
    let b = backend().await;
    let route = "    response_json:\n      allow: [id, name, address.city, items.sku, items.secret, tags]\n      deny: [items.secret]\n      rename: {name: full_name, items.sku: code}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    let http = Http::new(addr);
    *b.reply.lock().expect("lock") = Reply::json(json!({
        "id": 1,
        "name": "Ada",
        "password_hash": "x",
        "address": {"city": "London", "street": "Baker St"},
        "items": [{"sku": "a", "secret": 1, "price": 3}, {"sku": "b", "price": 4}],
        "tags": ["x", "y"]
    }));
    let res = http.get("/users/1").await;
    assert_eq!(res.status, StatusCode::OK);
    let expected = json!({
        "id": 1,
        "full_name": "Ada",
        "address": {"city": "London"},
        "items": [{"code": "a"}, {"code": "b"}],
        "tags": ["x", "y"]
    });
    assert_eq!(json_of(&res.body), expected);
    assert_eq!(
        res.headers["content-length"],
        res.body.len().to_string().as_str()
    );

    // A top-level array: every element.
    *b.reply.lock().expect("lock") =
        Reply::json(json!([{"id": 1, "name": "a", "x": 0}, {"id": 2, "name": "b"}]));
    let res = http.get("/users").await;
    assert_eq!(
        json_of(&res.body),
        json!([{"id": 1, "full_name": "a"}, {"id": 2, "full_name": "b"}])
    );
    assert_eq!(
        res.headers["content-length"],
        res.body.len().to_string().as_str()
    );

    // `+json` types too.
    let mut r = Reply::json(json!({"id": 3, "password_hash": "x"}));
    r.content_type = "application/vnd.api+json; charset=utf-8";
    *b.reply.lock().expect("lock") = r;
    assert_eq!(json_of(&http.get("/users/3").await.body), json!({"id": 3}));

    // The route without transforms: the body as sent.
    *b.reply.lock().expect("lock") = Reply::json(json!({"id": 1, "password_hash": "x"}));
    let res = http.get("/plain/users/1").await;
    assert_eq!(json_of(&res.body), json!({"id": 1, "password_hash": "x"}));
}

#[tokio::test]
async fn deny_only_keeps_everything_else() {
    let b = backend().await;
    let route = "    response_json: {deny: [password_hash, orders.card.number]}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    *b.reply.lock().expect("lock") = Reply::json(json!({
        "id": 1, "password_hash": "x",
        "orders": [{"n": 1, "card": {"number": "4111", "brand": "visa"}}, {"n": 2}]
    }));
    let res = Http::new(addr).get("/users/1").await;
    assert_eq!(
        json_of(&res.body),
        json!({"id": 1, "orders": [{"n": 1, "card": {"brand": "visa"}}, {"n": 2}]})
    );
}

#[tokio::test]
async fn non_json_non_2xx_invalid_and_oversized_bodies_pass_unchanged() {
    let b = backend().await;
    let route = "    response_json: {deny: [secret], max_bytes: 64}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    let http = Http::new(addr);
    let cases = [
        // Not JSON.
        Reply {
            status: StatusCode::OK,
            content_type: "text/plain",
            headers: Vec::new(),
            body: "{\"secret\":1}".to_owned(),
        },
        // Not a 2xx.
        Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "application/json",
            headers: Vec::new(),
            body: "{\"secret\":1}".to_owned(),
        },
        // Invalid JSON.
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            headers: Vec::new(),
            body: "{\"secret\":".to_owned(),
        },
        // Compressed (a content coding): left alone.
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            headers: vec![("content-encoding", "br")],
            body: "{\"secret\":1}".to_owned(),
        },
        // Over max_bytes, with a Content-Length.
        Reply::json(json!({"secret": 1, "pad": "x".repeat(100)})),
    ];
    for reply in cases {
        *b.reply.lock().expect("lock") = reply.clone();
        let res = http.get("/x").await;
        assert_eq!(res.status, reply.status);
        assert_eq!(res.body, reply.body, "{}", reply.content_type);
        assert_eq!(
            res.headers["content-length"],
            reply.body.len().to_string().as_str()
        );
    }
    // Over max_bytes, chunked: the bytes read are replayed, then the rest.
    let res = http.get("/chunks").await;
    assert_eq!(res.body, chunked_json().concat());
    // Under the limit, the same route rewrites.
    *b.reply.lock().expect("lock") = Reply::json(json!({"secret": 1, "id": 2}));
    assert_eq!(json_of(&http.get("/x").await.body), json!({"id": 2}));
}

/// Reads the first data frame of `path` before the backend sends the rest:
/// the gateway did not buffer the body.
async fn first_chunk_before_the_end(b: &Backend, addr: SocketAddr, path: &str) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .expect("request");
    let res = tokio::time::timeout(BOUND, client.request(req))
        .await
        .expect("headers in time")
        .expect("answer");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = tokio::time::timeout(BOUND, body.frame())
        .await
        .expect("first chunk before the backend ends the body")
        .expect("a frame")
        .expect("no error")
        .into_data()
        .expect("data");
    assert_eq!(first, Bytes::from_static(b"{\"first\":"));
    b.release.notify_one();
    let rest = tokio::time::timeout(BOUND, body.collect())
        .await
        .expect("the rest in time")
        .expect("body")
        .to_bytes();
    assert_eq!(rest, Bytes::from_static(b"true}"));
}

#[tokio::test]
async fn streams_are_not_buffered_without_a_json_transform_or_for_non_json() {
    let b = backend().await;
    let route = "    response_headers: {set: {x-t: \"1\"}}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    // No transforms at all, and header-only transforms: JSON streams.
    first_chunk_before_the_end(&b, addr, "/plain/stream/json").await;
    first_chunk_before_the_end(&b, addr, "/stream/json").await;

    let b = backend().await;
    let route = "    response_json: {deny: [first]}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    // A JSON transform does not buffer server-sent events.
    first_chunk_before_the_end(&b, addr, "/stream/sse").await;
}

#[tokio::test]
async fn cached_answers_are_transformed_on_the_way_out() {
    let b = backend().await;
    let route = "    cache_ttl: 60\n    response_headers: {remove: [server]}\n    response_json: {deny: [secret]}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    let http = Http::new(addr);
    let mut r = Reply::json(json!({"id": 1, "secret": 2}));
    r.headers = vec![("server", "backend")];
    *b.reply.lock().expect("lock") = r;
    for expected in ["MISS", "HIT"] {
        let res = http.get("/cached").await;
        assert_eq!(res.headers["x-cache"], expected);
        assert_eq!(json_of(&res.body), json!({"id": 1}));
        assert!(!res.headers.contains_key("server"));
        assert_eq!(
            res.headers["content-length"],
            res.body.len().to_string().as_str()
        );
    }
}

#[tokio::test]
async fn the_readme_section_loads_and_rewrites() {
    let readme = include_str!("../README.md");
    let yaml = readme
        .split("### Transformations (")
        .nth(1)
        .and_then(|s| s.split("```yaml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's transformation YAML");
    let b = backend().await;
    let services = format!(
        "services:\n  user-service: {{ instances: [\"{}\"] }}\n",
        b.addr
    );
    let (_gw, addr) = gateway(&format!("{services}{yaml}")).await;
    *b.reply.lock().expect("lock") = Reply::json(json!({
        "id": 7, "name": "Ada", "password_hash": "x",
        "address": {"city": "Paris", "zip": "75001"}
    }));
    let res = Http::new(addr).get("/api/users/7").await;
    assert_eq!(res.headers["x-frame-options"], "DENY");
    assert_eq!(
        json_of(&res.body),
        json!({"id": 7, "full_name": "Ada", "address": {"city": "Paris"}})
    );
}

#[tokio::test]
async fn rewritten_bodies_drop_stale_validators_and_head_states_no_stale_length() {
    let b = backend().await;
    let route = "    response_json: {deny: [secret]}\n";
    let (_gw, addr) = gateway(&yaml(&b, route)).await;
    let http = Http::new(addr);
    let mut r = Reply::json(json!({"id": 1, "secret": "s"}));
    r.headers = vec![("etag", "\"v1\""), ("content-digest", "sha-256=:x:")];
    *b.reply.lock().expect("lock") = r.clone();
    let res = http.get("/x").await;
    assert_eq!(json_of(&res.body), json!({"id": 1}));
    assert!(!res.headers.contains_key("etag"));
    assert!(!res.headers.contains_key("content-digest"));

    // HEAD: the upstream's length is the untransformed body's.
    let res = http.send(Method::HEAD, "/x", &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        !res.headers.contains_key("content-length"),
        "{:?}",
        res.headers
    );

    // A range of a JSON body is not JSON: passed through as sent.
    r.status = StatusCode::PARTIAL_CONTENT;
    r.body = "{\"id\": 1, \"secret\": \"s\"}".to_owned();
    *b.reply.lock().expect("lock") = r.clone();
    let res = http.get("/x").await;
    assert_eq!(res.body, r.body);
    assert_eq!(res.headers["etag"], "\"v1\"");

    // The route without transforms keeps them.
    r.status = StatusCode::OK;
    *b.reply.lock().expect("lock") = r;
    let res = http.get("/plain/x").await;
    assert_eq!(res.headers["etag"], "\"v1\"");
}

#[tokio::test]
async fn transforms_built_in_code_are_checked_and_applied() {
    use msp_gateway::config::{RouteConfig, ServiceConfig};
    use msp_gateway::transform::{HeaderTransformConfig, JsonTransformConfig};
    let refused = GatewayConfig::builder()
        .route(
            RouteConfig::new("/a/*")
                .service("backend")
                .request_headers(HeaderTransformConfig::new().set("x-auth-provider", "me")),
        )
        .service(
            "backend",
            ServiceConfig::new(["127.0.0.1:1".parse().expect("addr")]),
        )
        .build()
        .expect_err("an identity header");
    let p = &refused.problems()[0];
    assert_eq!(p.field(), "request_headers.set.x-auth-provider");
    assert!(p.message().contains("identity"), "{}", p.message());

    let b = backend().await;
    let config = GatewayConfig::builder()
        .route(
            RouteConfig::new("/*")
                .service("backend")
                .request_headers(HeaderTransformConfig::new().add("x-tenant", "code"))
                .response_json(JsonTransformConfig::new().allow(["x-tenant"])),
        )
        .service("backend", ServiceConfig::new([b.addr]))
        .build()
        .expect("valid");
    let gw = msp_gateway::Gateway::from_config(config)
        .await
        .expect("builds");
    let (_gw, addr) = common_gw::serve(gw).await;
    let res = Http::new(addr).get("/echo").await;
    assert_eq!(json_of(&res.body), json!({"x-tenant": ["code"]}));
}
