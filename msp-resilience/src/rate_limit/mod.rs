//! Rate limiting: GCRA in one atomic, per key, across processes.
//!
//! - [`RateLimiter`]: one limit for all requests. A check is a clock read
//!   and one compare-and-swap on an `AtomicU64` (the generic cell rate
//!   algorithm); no lock, no allocation.
//! - [`KeyedRateLimiter`]: one limit per key (peer IP with [`PeerAddr`], a
//!   header with [`HeaderKey`], anything with [`KeyFn`]), where keys may
//!   have their own [`Quota`]s and idle keys are evicted.
//! - Quotas read like `1000/hour`, `50/s`, `10/min burst 20` ([`Quota`]),
//!   and can be changed at run time (`set_quota`) for every clone at once.
//! - [`RateLimitLayer`] rejects over-limit requests with
//!   [`RateLimited`](error::RateLimited) (carrying `retry_after`); its
//!   [`answer_429`](RateLimitLayer::answer_429) answers `429 Too Many Requests`
//!   with `Retry-After` and the IETF draft `RateLimit-Limit`,
//!   `RateLimit-Remaining`, `RateLimit-Reset` headers instead.
//! - With the `redis` feature, `RedisRateLimiter` enforces one limit
//!   across processes with an atomic script in Redis (GCRA on Redis's own
//!   clock), falling back to fail-open, fail-closed or a local limit when
//!   Redis is down; `RedisRateLimitLayer` applies it to a service.
//!
//! Every clone of a layer or service checks the same limit: unlike tower's
//! `RateLimit`, whose state is per clone (axum#2634), a limit here holds
//! when axum clones the service for each request. Over-limit requests are
//! rejected, never queued.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use msp_resilience::rate_limit::{KeyedRateLimiter, PeerAddr, RateLimitLayer};
//! use std::net::SocketAddr;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 2 requests per minute per client IP; one partner gets more.
//! let limiter = KeyedRateLimiter::builder("2/min".parse()?)
//!     .quota_for([10, 0, 0, 7], "100/min".parse()?)
//!     .build();
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::keyed(limiter, PeerAddr::new()).answer_429());
//!
//! let from = |ip: [u8; 4]| {
//!     let mut req = Request::new(Body::empty());
//!     req.extensions_mut().insert(SocketAddr::from((ip, 40000)));
//!     req
//! };
//! for _ in 0..2 {
//!     let res = app.clone().oneshot(from([10, 0, 0, 1])).await?;
//!     assert_eq!(res.status(), StatusCode::OK);
//! }
//! let res = app.clone().oneshot(from([10, 0, 0, 1])).await?;
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "30");
//! # Ok(())
//! # }
//! ```

mod clock;
mod config;
pub mod error;
pub mod future;
mod gcra;
mod key;
mod layer;
mod limiter;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod service;

pub use self::clock::Clock;
pub use self::config::{InvalidKey, RateLimitConfig};
pub use self::gcra::Admitted;
pub use self::key::{HeaderKey, KeyExtractor, KeyFn, KeyedLimit, Limit, PeerAddr};
pub use self::layer::{HttpRateLimitLayer, RateLimitLayer};
pub use self::limiter::{KeyedRateLimiter, KeyedRateLimiterBuilder, RateLimiter};
pub use self::quota::{InvalidQuota, Quota};
pub use self::service::{HttpRateLimit, RateLimit};

#[cfg(feature = "redis")]
pub use self::redis::{
    HttpRedisRateLimit, HttpRedisRateLimitLayer, OnRedisError, RedisKey, RedisRateLimit,
    RedisRateLimitConfig, RedisRateLimitLayer, RedisRateLimiter, RedisSetupError,
};
