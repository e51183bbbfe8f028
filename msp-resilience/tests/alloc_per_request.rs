//! The breaker, rate limiter and bulkhead add no heap allocation per
//! request under an axum `Router`, although axum clones the route service
//! for every request (figures: examples/alloc_per_request.rs and
//! BENCHMARKS.md). One test in this binary, so no other test allocates
//! while it counts.

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode};
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use msp_resilience::http::HttpErrorLayer;
use msp_resilience::rate_limit::{KeyedRateLimiter, PeerAddr, RateLimitLayer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::net::SocketAddr;
use tower::{ServiceBuilder, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 200;

fn request() -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).expect("request");
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 0, 0, 1], 40000)));
    req
}

async fn allocations(app: Router) -> usize {
    for _ in 0..10 {
        let res = app.clone().oneshot(request()).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
    }
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        let res = app.clone().oneshot(request()).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
    }
    region.change().allocations
}

#[test]
fn breaker_limiter_and_bulkhead_add_no_allocation_per_request_under_axum() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let route = || Router::new().route("/", get(|| async { "ok" }));
        let baseline = allocations(route().layer(HttpErrorLayer::new())).await;

        let limiter =
            KeyedRateLimiter::builder("1000000/s burst 1000".parse().expect("quota")).build();
        let stack = ServiceBuilder::new()
            .layer(HttpErrorLayer::new())
            .layer(
                BulkheadLayer::new(
                    BulkheadConfig::builder()
                        .max_concurrent(64)
                        .build()
                        .expect("config"),
                )
                .release_on_body_end()
                .classify_http_status(),
            )
            .layer(RateLimitLayer::keyed(limiter, PeerAddr::new()).answer_429())
            .layer(
                CircuitBreakerLayer::new(CircuitBreakerConfig::default()).classify_http_status(),
            );
        let layered = allocations(route().layer(stack)).await;

        // One allocation per request would add N; allow a few one-off
        // allocations (lazy statics, a first key) in either run.
        assert!(
            layered < baseline + N / 10,
            "{N} requests: {layered} allocations with the layers, {baseline} without"
        );
    });
}
