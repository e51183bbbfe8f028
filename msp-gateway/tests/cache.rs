//! The response cache end to end: a real gateway on loopback in front of
//! a counting axum backend.

mod common_gw;

use axum::extract::Request;
use common_gw::{BOUND, Http, gateway};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use msp_gateway::Gateway;
use msp_gateway::admin::Admin;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceExt;

/// A backend counting its requests. The last path segment picks the
/// answer's caching headers; the body names the path, the request's
/// number and its `Accept-Language`, so a cached answer is recognisable.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// `…/slow` requests report here, then wait for a permit.
    arrived: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

impl Backend {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let hits = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (tx, arrived) = mpsc::unbounded_channel();
    let (h, r) = (hits.clone(), release.clone());
    let app = axum::Router::new().fallback(move |req: Request| {
        let (hits, release, tx) = (h.clone(), r.clone(), tx.clone());
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            let path = req.uri().path().to_owned();
            let lang = req
                .headers()
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let last = path.rsplit('/').next().unwrap_or_default().to_owned();
            if last == "slow" {
                let _ = tx.send(());
                release.acquire().await.expect("open").forget();
            }
            let mut text = format!("{path} #{n} {lang}");
            if last == "big" {
                text.push_str(&"x".repeat(2 * 1024 * 1024));
            }
            let mut res = Response::new(axum::body::Body::from(text));
            let h = res.headers_mut();
            let cc = |v: &'static str| HeaderValue::from_static(v);
            match last.as_str() {
                "nostore" => drop(h.insert("cache-control", cc("max-age=60, No-Store"))),
                "private" => drop(h.insert("cache-control", cc("PRIVATE, max-age=60"))),
                "nocache" => drop(h.insert("cache-control", cc("no-cache=\"x\", max-age=60"))),
                "cookie" => drop(h.insert("set-cookie", cc("session=1"))),
                "vary" => drop(h.insert("vary", cc("Accept-Language"))),
                "star" => drop(h.insert("vary", cc("*"))),
                "public" => drop(h.insert("cache-control", cc("public, max-age=60"))),
                "short" => drop(h.insert("cache-control", cc("max-age=5"))),
                "error" => *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
                _ => {}
            }
            res
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        addr,
        hits,
        arrived,
        release,
    }
}

/// Routes `a` and `b`: the same paths on two hosts, both caching 300 s.
fn yaml(addr: SocketAddr) -> String {
    format!(
        r#"
routes:
  - name: a
    path: "/api/*"
    host: a.example
    service: s
    cache_ttl: 300
  - name: b
    path: "/api/*"
    host: b.example
    service: s
    cache_ttl: 300
  - name: plain
    path: "/plain/*"
    service: s
  - name: small
    path: "/small/*"
    service: s
    cache_ttl: 300
    cache_max_bytes: 1000
services:
  s: {{ instances: ["{addr}"] }}
"#
    )
}

async fn setup() -> (Backend, Gateway, Http) {
    let b = backend().await;
    let (gw, addr) = gateway(&yaml(b.addr)).await;
    (b, gw, Http::new(addr))
}

async fn get(http: &Http, host: &str, path: &str, extra: &[(&str, &str)]) -> common_gw::Answer {
    let mut headers = vec![("host", host)];
    headers.extend_from_slice(extra);
    http.send(Method::GET, path, &headers).await
}

fn x_cache(a: &common_gw::Answer) -> &str {
    a.headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
}

#[tokio::test]
async fn a_miss_then_a_hit_from_one_upstream_request_with_age() {
    let (b, _gw, http) = setup().await;
    let first = get(&http, "a.example", "/api/p?x=1", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(first.body, "/api/p #1 -");
    let second = get(&http, "a.example", "/api/p?x=1", &[]).await;
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.body, first.body);
    let age: u64 = second.headers["age"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    assert!(age < 300, "age {age}");
    assert_eq!(b.hits(), 1);
    // Another query is another entry; HEAD is its own entry too.
    let other = get(&http, "a.example", "/api/p?x=2", &[]).await;
    assert_eq!((x_cache(&other), b.hits()), ("MISS", 2));
    let head = http
        .send(Method::HEAD, "/api/p?x=1", &[("host", "a.example")])
        .await;
    assert_eq!(
        (x_cache(&head), head.body.as_str(), b.hits()),
        ("MISS", "", 3)
    );
    let head = http
        .send(Method::HEAD, "/api/p?x=1", &[("host", "a.example")])
        .await;
    assert_eq!(
        (x_cache(&head), head.body.as_str(), b.hits()),
        ("HIT", "", 3)
    );
    // A route without cache_ttl: no cache, no header.
    get(&http, "a.example", "/plain/p", &[]).await;
    let plain = get(&http, "a.example", "/plain/p", &[]).await;
    assert_eq!((x_cache(&plain), b.hits()), ("none", 5));
}

#[tokio::test]
async fn no_store_private_no_cache_set_cookie_vary_star_and_errors_are_never_served_from_cache() {
    let (b, _gw, http) = setup().await;
    for (i, last) in ["nostore", "private", "nocache", "cookie", "star", "error"]
        .into_iter()
        .enumerate()
    {
        let path = format!("/api/{last}");
        let one = get(&http, "a.example", &path, &[]).await;
        let two = get(&http, "a.example", &path, &[]).await;
        assert_eq!((x_cache(&one), x_cache(&two)), ("MISS", "MISS"), "{last}");
        assert_eq!(two.body, format!("{path} #{} -", 2 * i + 2), "{last}");
        assert_eq!(b.hits(), 2 * i + 2, "{last} reached the backend twice");
    }
}

#[tokio::test]
async fn requests_saying_no_cache_or_no_store_bypass_the_cache() {
    let (b, _gw, http) = setup().await;
    get(&http, "a.example", "/api/p", &[]).await;
    for cc in ["no-cache", "max-age=0, NO-STORE"] {
        let res = get(&http, "a.example", "/api/p", &[("cache-control", cc)]).await;
        assert_eq!(x_cache(&res), "MISS", "{cc}");
    }
    assert_eq!(b.hits(), 3);
    let res = get(&http, "a.example", "/api/p", &[]).await;
    assert_eq!((x_cache(&res), res.body.as_str()), ("HIT", "/api/p #1 -"));
}

#[tokio::test]
async fn vary_keeps_one_entry_per_accept_language() {
    let (b, _gw, http) = setup().await;
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    assert_eq!(
        get(&http, "a.example", "/api/vary", &en).await.body,
        "/api/vary #1 en"
    );
    assert_eq!(
        get(&http, "a.example", "/api/vary", &de).await.body,
        "/api/vary #2 de"
    );
    let en2 = get(&http, "a.example", "/api/vary", &en).await;
    let de2 = get(&http, "a.example", "/api/vary", &de).await;
    assert_eq!(
        (x_cache(&en2), en2.body.as_str()),
        ("HIT", "/api/vary #1 en")
    );
    assert_eq!(
        (x_cache(&de2), de2.body.as_str()),
        ("HIT", "/api/vary #2 de")
    );
    // No Accept-Language is a third variant.
    let none = get(&http, "a.example", "/api/vary", &[]).await;
    assert_eq!(
        (x_cache(&none), none.body.as_str()),
        ("MISS", "/api/vary #3 -")
    );
    assert_eq!(b.hits(), 3);
}

#[tokio::test]
async fn the_same_path_under_two_routes_never_shares_an_entry() {
    let (b, gw, http) = setup().await;
    let a = get(&http, "a.example", "/api/same", &[]).await;
    let bb = get(&http, "b.example", "/api/same", &[]).await;
    assert_eq!((x_cache(&a), x_cache(&bb)), ("MISS", "MISS"));
    assert_eq!(b.hits(), 2);
    assert_eq!(get(&http, "a.example", "/api/same", &[]).await.body, a.body);
    assert_eq!(
        get(&http, "b.example", "/api/same", &[]).await.body,
        bb.body
    );
    assert_eq!(b.hits(), 2);

    // Purging route `a` through the admin listener leaves `b` alone.
    let admin = Admin::new(gw.clone());
    let purge = |q: &str| {
        http::Request::delete(format!("/cache{q}"))
            .body(Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    let res = admin
        .clone()
        .oneshot(purge("?route=a"))
        .await
        .expect("admin");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        x_cache(&get(&http, "a.example", "/api/same", &[]).await),
        "MISS"
    );
    assert_eq!(
        x_cache(&get(&http, "b.example", "/api/same", &[]).await),
        "HIT"
    );
    let res = admin
        .clone()
        .oneshot(purge("?route=nope"))
        .await
        .expect("admin");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Everything.
    let res = admin.oneshot(purge("")).await.expect("admin");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.as_ref(), b"{\n  \"purged\": \"all\"\n}");
    assert_eq!(
        x_cache(&get(&http, "b.example", "/api/same", &[]).await),
        "MISS"
    );
    assert_eq!(b.hits(), 4);
}

#[tokio::test]
async fn a_request_with_authorization_is_shared_only_when_the_response_says_public() {
    let (b, _gw, http) = setup().await;
    let auth = [("authorization", "Bearer secret")];
    get(&http, "a.example", "/api/mine", &auth).await;
    let again = get(&http, "a.example", "/api/mine", &auth).await;
    let anonymous = get(&http, "a.example", "/api/mine", &[]).await;
    assert_eq!((x_cache(&again), x_cache(&anonymous)), ("MISS", "MISS"));
    assert_eq!(
        anonymous.body, "/api/mine #3 -",
        "the authorized answer was not stored"
    );

    get(&http, "a.example", "/api/public", &auth).await;
    let shared = get(&http, "a.example", "/api/public", &[]).await;
    assert_eq!(
        (x_cache(&shared), shared.body.as_str()),
        ("HIT", "/api/public #4 -")
    );
    assert_eq!(b.hits(), 4);
}

#[tokio::test]
async fn freshness_ends_at_max_age_else_cache_ttl_and_age_counts_the_time_held() {
    let (b, _gw, http) = setup().await;
    get(&http, "a.example", "/api/short", &[]).await; // max-age=5
    get(&http, "a.example", "/api/long", &[]).await; // cache_ttl 300

    // Tokio's clock moves 10 s on, then runs on from there.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::time::resume();

    let long = get(&http, "a.example", "/api/long", &[]).await;
    assert_eq!(x_cache(&long), "HIT");
    let age: u64 = long.headers["age"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    assert!((10..300).contains(&age), "age {age}");
    let short = get(&http, "a.example", "/api/short", &[]).await;
    assert_eq!(
        (x_cache(&short), short.body.as_str()),
        ("MISS", "/api/short #3 -")
    );
    assert_eq!(b.hits(), 3);

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(300)).await;
    tokio::time::resume();
    let long = get(&http, "a.example", "/api/long", &[]).await;
    assert_eq!(
        (x_cache(&long), long.body.as_str()),
        ("MISS", "/api/long #4 -")
    );
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_upstream_request() {
    let (mut b, gw, _http) = setup().await;
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (gw, started) = (gw.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get("/api/slow")
                .header("host", "a.example")
                .body(Empty::<bytes::Bytes>::new())
                .expect("request");
            started.fetch_add(1, Ordering::SeqCst);
            let res = gw.oneshot(req).await.expect("answer");
            let x = res.headers()["x-cache"].to_str().expect("ascii").to_owned();
            let body = res.into_body().collect().await.expect("body").to_bytes();
            (x, body)
        }));
    }
    // The first has reached the backend and every request is under way
    // (on this one-thread runtime each has run up to its lookup).
    tokio::time::timeout(BOUND, b.arrived.recv())
        .await
        .expect("in time");
    for _ in 0..1000 {
        if started.load(Ordering::SeqCst) == 100 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 100);
    b.release.add_permits(100);
    let mut hits = 0;
    for t in tasks {
        let (x, body) = tokio::time::timeout(BOUND, t)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(body, "/api/slow #1 -");
        hits += usize::from(x == "HIT");
    }
    assert_eq!(hits, 99);
    assert_eq!(b.hits(), 1, "one upstream request for a hundred misses");
}

#[tokio::test]
async fn bodies_over_the_entry_limit_stream_through_uncached() {
    let (b, _gw, http) = setup().await;
    for n in 1..=2 {
        let big = get(&http, "a.example", "/api/big", &[]).await;
        assert_eq!(x_cache(&big), "MISS");
        assert_eq!(
            big.body.len(),
            format!("/api/big #{n} -").len() + 2 * 1024 * 1024
        );
    }
    // `cache_max_bytes: 1000` also bounds an entry: 1 100 bytes stream on.
    let long = "y".repeat(1100);
    for _ in 0..2 {
        let res = get(&http, "a.example", &format!("/small/{long}"), &[]).await;
        assert_eq!(x_cache(&res), "MISS");
    }
    get(&http, "a.example", "/small/s", &[]).await;
    assert_eq!(
        x_cache(&get(&http, "a.example", "/small/s", &[]).await),
        "HIT"
    );
    assert_eq!(b.hits(), 5);
}

#[tokio::test]
async fn a_cached_answer_still_needs_the_routes_credentials() {
    let b = backend().await;
    let (_gw, addr) = gateway(&format!(
        r#"
routes:
  - path: "/api/*"
    service: s
    auth_required: true
    cache_ttl: 300
services:
  s: {{ instances: ["{}"] }}
auth:
  providers:
    keys:
      api_key:
        consumers:
          - name: demo-app
            key_sha256: "{}"
"#,
        b.addr,
        msp_gateway::auth::hash_api_key("k1")
    ))
    .await;
    let http = Http::new(addr);
    let key = [("x-api-key", "k1")];
    assert_eq!(
        x_cache(&get(&http, "gw", "/api/public", &key).await),
        "MISS"
    );
    assert_eq!(x_cache(&get(&http, "gw", "/api/public", &key).await), "HIT");
    let anonymous = get(&http, "gw", "/api/public", &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong = get(&http, "gw", "/api/public", &[("x-api-key", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn every_request_to_a_caching_route_is_counted_by_result() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // Current-thread runtime: the gateway's tasks record here too.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (_b, _gw, http) = setup().await;
    get(&http, "a.example", "/api/m", &[]).await;
    get(&http, "a.example", "/api/m", &[]).await;
    get(&http, "a.example", "/api/m", &[]).await;
    get(
        &http,
        "a.example",
        "/api/m",
        &[("cache-control", "no-cache")],
    )
    .await;
    get(&http, "b.example", "/api/nostore", &[]).await;
    http.send(Method::POST, "/api/m", &[("host", "a.example")])
        .await;
    let text = handle.render();
    for line in [
        r#"msp_gateway_cache_total{route="a",result="miss"} 1"#,
        r#"msp_gateway_cache_total{route="a",result="hit"} 2"#,
        r#"msp_gateway_cache_total{route="a",result="bypass"} 2"#,
        r#"msp_gateway_cache_total{route="b",result="uncacheable"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_routes_entries_and_empties_a_changed_one() {
    let (b, gw, http) = setup().await;
    get(&http, "a.example", "/api/r", &[]).await;
    get(&http, "b.example", "/api/r", &[]).await;
    let same = msp_gateway::config::GatewayConfig::from_yaml(&yaml(b.addr), "same").expect("valid");
    gw.reload(same).await.expect("reloads");
    assert_eq!(
        x_cache(&get(&http, "a.example", "/api/r", &[]).await),
        "HIT"
    );
    // Route b's lifetime changes: its old entries are gone.
    let changed = yaml(b.addr).replacen(
        "host: b.example\n    service: s\n    cache_ttl: 300",
        "host: b.example\n    service: s\n    cache_ttl: 60",
        1,
    );
    assert_ne!(changed, yaml(b.addr));
    let changed =
        msp_gateway::config::GatewayConfig::from_yaml(&changed, "changed").expect("valid");
    gw.reload(changed).await.expect("reloads");
    assert_eq!(
        x_cache(&get(&http, "a.example", "/api/r", &[]).await),
        "HIT"
    );
    assert_eq!(
        x_cache(&get(&http, "b.example", "/api/r", &[]).await),
        "MISS"
    );
    assert_eq!(
        x_cache(&get(&http, "b.example", "/api/r", &[]).await),
        "HIT"
    );
    assert_eq!(b.hits(), 3);
}
