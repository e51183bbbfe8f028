//! Heap allocations per request that msp-resilience's breaker, rate limiter
//! and bulkhead add to an axum `Router`.
//!
//! axum clones the route service for every request, so a `Clone` that
//! allocates (or a `call` that boxes) is paid per request. This drives
//! `N` requests through `Router::oneshot` with and without the layers,
//! counting allocations with a counting global allocator, and prints
//! allocations per request for each stack and the difference to the
//! baseline (the router with only the error adapter, which any axum app
//! using msp-resilience has).
//!
//! ```text
//! cargo run --release -p msp-resilience --features axum --example alloc_per_request
//! ```

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http::{Request, StatusCode};
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use msp_resilience::http::HttpErrorLayer;
use msp_resilience::rate_limit::{KeyedRateLimiter, PeerAddr, Quota, RateLimitLayer, RateLimiter};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::net::SocketAddr;
use tower::{ServiceBuilder, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: u64 = 10_000;

fn request() -> Request<Body> {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = http::Uri::from_static("/");
    // What `into_make_service_with_connect_info::<SocketAddr>()` inserts.
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40000))));
    req
}

/// Allocations per request through `app`, after a warm-up.
async fn per_request(app: Router) -> Result<f64, Box<dyn std::error::Error>> {
    for _ in 0..100 {
        let res = app.clone().oneshot(request()).await?;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        let res = app.clone().oneshot(request()).await?;
        assert_eq!(res.status(), StatusCode::OK);
    }
    Ok(region.change().allocations as f64 / N as f64)
}

fn route() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn breaker() -> CircuitBreakerLayer<msp_core::classify::HttpClassifier> {
    CircuitBreakerLayer::new(CircuitBreakerConfig::default()).classify_http_status()
}

/// Never exhausted by this loop, with realistic header values.
fn quota() -> Result<Quota, Box<dyn std::error::Error>> {
    Ok("1000000/s burst 1000".parse()?)
}

fn limiter() -> Result<RateLimitLayer<RateLimiter>, Box<dyn std::error::Error>> {
    Ok(RateLimitLayer::new(RateLimiter::new(quota()?)))
}

fn keyed_limiter() -> Result<
    RateLimitLayer<msp_resilience::rate_limit::KeyedLimit<std::net::IpAddr, PeerAddr>>,
    Box<dyn std::error::Error>,
> {
    let limiter = KeyedRateLimiter::builder(quota()?).build();
    // Reads the `ConnectInfo<SocketAddr>` axum inserts (feature `axum`).
    Ok(RateLimitLayer::keyed(limiter, PeerAddr::new()))
}

fn bulkhead() -> Result<BulkheadLayer, Box<dyn std::error::Error>> {
    Ok(BulkheadLayer::new(
        BulkheadConfig::builder().max_concurrent(1024).build()?,
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let adapter = || ServiceBuilder::new().layer(HttpErrorLayer::new());

    let router = per_request(route()).await?;
    // What any `Router::layer` costs: axum boxes the layered route again.
    let identity = per_request(route().layer(tower::layer::util::Identity::new())).await?;
    let base = per_request(route().layer(adapter())).await?;
    let rows =
        [
            (
                "breaker",
                per_request(route().layer(adapter().layer(breaker()))).await?,
            ),
            (
                "rate limit (one limit, 429 mode)",
                per_request(route().layer(adapter().layer(limiter()?.answer_429()))).await?,
            ),
            (
                "rate limit (per peer IP, 429 mode)",
                per_request(route().layer(adapter().layer(keyed_limiter()?.answer_429()))).await?,
            ),
            (
                "bulkhead (slot until body end)",
                per_request(route().layer(
                    adapter().layer(bulkhead()?.release_on_body_end().classify_http_status()),
                ))
                .await?,
            ),
            (
                "breaker + limiter + bulkhead",
                per_request(
                    route().layer(
                        adapter()
                            .layer(bulkhead()?.release_on_body_end().classify_http_status())
                            .layer(limiter()?.answer_429())
                            .layer(breaker()),
                    ),
                )
                .await?,
            ),
            (
                "breaker + per-IP limiter + bulkhead",
                per_request(
                    route().layer(
                        adapter()
                            .layer(bulkhead()?.release_on_body_end().classify_http_status())
                            .layer(keyed_limiter()?.answer_429())
                            .layer(breaker()),
                    ),
                )
                .await?,
            ),
        ];

    println!("allocations per request, {N} requests through Router::oneshot");
    println!("{:<40} {:>8} {:>10}", "stack", "allocs", "added");
    println!("{:<40} {:>8.2} {:>10}", "router alone", router, "");
    println!(
        "{:<40} {:>8.2} {:>10}",
        "router + .layer(Identity)", identity, ""
    );
    println!(
        "{:<40} {:>8.2} {:>10}",
        "router + HttpErrorLayer (baseline)", base, ""
    );
    for (name, allocs) in rows {
        println!("{:<40} {:>8.2} {:>+10.2}", name, allocs, allocs - base);
    }
    Ok(())
}
