//! The Redis limiter against a real Redis: several independent limiters
//! (like several processes) share one limit; behaviour when Redis is down.
#![cfg(feature = "redis")]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use msp_core::testing::{Backend, backend};
use msp_resilience::rate_limit::{
    KeyFn, OnRedisError, Quota, RedisRateLimitConfig, RedisRateLimitLayer, RedisRateLimiter,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("msp-test:{test}:{}:{nanos}", std::process::id())
}

fn config(url: &str, prefix: &str, quota: &str) -> RedisRateLimitConfig {
    let mut c = RedisRateLimitConfig::new(url, quota.parse::<Quota>().expect("quota"));
    c.prefix = prefix.to_owned();
    c.timeout = Duration::from_secs(2);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_independent_limiters_admit_at_most_the_quota_in_total() {
    let Some(url) = backend(Backend::Redis) else {
        return;
    };
    let prefix = unique_prefix("three");
    // Three limiters, each with its own connection manager: three processes.
    let limiters: Vec<_> = (0..3)
        .map(|_| {
            let mut c = config(&url, &prefix, "30/hour");
            c.on_error = OnRedisError::FailClosed; // an error must not admit
            RedisRateLimiter::new(c).expect("limiter")
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for limiter in &limiters {
        for _ in 0..20 {
            let limiter = limiter.clone();
            tasks.spawn(async move { limiter.check("client-1").await.is_ok() });
        }
    }
    let mut admitted = 0;
    while let Some(ok) = tasks.join_next().await {
        admitted += usize::from(ok.expect("task"));
    }
    assert_eq!(admitted, 30);
    assert!(limiters.iter().all(|l| !l.is_degraded()));
    // Another key has its own limit.
    assert!(limiters[1].check("client-2").await.is_ok());
    let limited = limiters[2]
        .check("client-1")
        .await
        .expect_err("over the limit");
    assert!(limited.retry_after() > Duration::from_secs(100));
    assert!(limited.retry_after() <= Duration::from_secs(120));
}

#[tokio::test]
async fn admitted_requests_report_what_is_left() {
    let Some(url) = backend(Backend::Redis) else {
        return;
    };
    let prefix = unique_prefix("left");
    let limiter = RedisRateLimiter::new(config(&url, &prefix, "10/min burst 3")).expect("limiter");
    let left: Vec<_> = (0..3)
        .map(|_| limiter.check("k"))
        .collect::<futures_util::future::JoinAll<_>>()
        .await
        .into_iter()
        .map(|r| r.expect("admitted").remaining())
        .collect();
    let mut sorted = left.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2]);
    let limited = limiter.check("k").await.expect_err("burst used");
    assert!(limited.retry_after() <= Duration::from_secs(6));
}

#[tokio::test]
async fn http_layer_over_redis() {
    let Some(url) = backend(Backend::Redis) else {
        return;
    };
    let prefix = unique_prefix("http");
    let limiter = RedisRateLimiter::new(config(&url, &prefix, "3/hour")).expect("limiter");
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RedisRateLimitLayer::new(
            limiter,
            KeyFn(|r: &Request<Body>| r.headers().get("x-user").cloned()),
        )
        .answer_429(),
    );
    let req = || {
        Request::get("/")
            .header("x-user", "u1")
            .body(Body::empty())
            .expect("request")
    };
    for _ in 0..3 {
        let res = app.clone().oneshot(req()).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["ratelimit-limit"], "3");
    }
    let res = app.clone().oneshot(req()).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
}

/// A closed port on loopback: connecting fails at once.
fn down_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn redis_down_fails_open_closed_or_local_as_configured() {
    let url = down_url();
    let limiter = |on_error| {
        let mut c = config(&url, "msp-test:down", "5/hour");
        c.on_error = on_error;
        c.timeout = Duration::from_millis(500);
        RedisRateLimiter::new(c).expect("a down Redis is not a setup error")
    };
    let count = |l: RedisRateLimiter| async move {
        let mut ok = 0;
        for _ in 0..12 {
            ok += usize::from(l.check("k").await.is_ok());
        }
        assert!(l.is_degraded());
        ok
    };
    assert_eq!(count(limiter(OnRedisError::FailOpen)).await, 12);
    assert_eq!(count(limiter(OnRedisError::FailClosed)).await, 0);
    assert_eq!(
        count(limiter(OnRedisError::Local)).await,
        5,
        "the quota, enforced locally"
    );
}

#[test]
fn bad_url_is_a_typed_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let err = RedisRateLimiter::new(RedisRateLimitConfig::new(
        "not a url",
        Quota::per_second(1).expect("quota"),
    ))
    .expect_err("bad url");
    assert!(err.to_string().contains("not a url"));
}
