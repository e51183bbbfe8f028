//! Fault tolerance as tower middleware.
//!
//! `msp-resilience` gives a tower or axum service the patterns that keep a
//! microservice standing when its dependencies do not: each one a
//! `Layer` / `Service` / `ResponseFuture` trio with small error types you
//! can downcast, configurable from code or (with `serde`) from a config
//! file.
//!
//! | module | what it does | rejects with |
//! |---|---|---|
//! | [`timeout`] | per-attempt and overall deadlines, per-request override, deadline propagation (`x-msp-deadline-ms`, `grpc-timeout`) | [`Elapsed`] |
//! | [`retry`] | backoff with jitter, a retry budget shared by every clone, idempotent methods only, `Retry-After`, per-try timeout, request body replay up to 64 KiB | ([`BudgetExhausted`], opt-in) |
//! | [`circuit_breaker`] | closed / open / half-open over count or time windows, failure-rate, slow-call and consecutive-failure trips, bounded probes, growing open time | [`CircuitOpen`] |
//! | [`rate_limit`] | GCRA over one atomic, quotas like `1000/hour`, keyed per-client limits, runtime quota changes, `429` with `Retry-After` | [`RateLimited`] |
//! | [`bulkhead`] | max concurrent calls, bounded queue and wait, permits held until the body ends, adaptive limit | [`BulkheadFull`] |
//! | [`hedge`] | a second copy of slow idempotent requests after a delay or latency percentile | |
//! | [`fallback`] | a value or another service when the call fails or is rejected | |
//! | [`chaos`] | seeded error and latency injection for tests and demos | [`InjectedFault`](chaos::InjectedFault) |
//! | [`http`] | the errors above as `504` / `503` / `429` responses, so axum needs no `HandleErrorLayer` | |
//!
//! State that must be shared — breaker windows, limiter cells, retry and
//! hedge budgets, latency histograms — lives behind an `Arc`, so **every
//! clone of a service enforces the same limits** (under axum, each request
//! runs on a clone; tower's own `RateLimit` is per clone). Every layer has
//! a shortcut on `ServiceBuilder` through [`ResilienceBuilderExt`].
//!
//! All layers classify results with msp-core's
//! [`Classify`](msp_core::Classify): for HTTP, errors and `5xx` are
//! failures and `4xx` are not, for the breaker, the retry and the fallback
//! alike.
//!
//! # Example
//!
//! An axum app whose handler calls a flaky dependency through a resilient
//! client stack, and whose routes answer timeouts with `504`:
//!
//! ```
//! use axum::{routing::get, Router};
//! use msp_core::backoff::Backoff;
//! use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//! use msp_resilience::{ResilienceBuilderExt, RetryLayer};
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! fn is_error(_: &String, res: Result<&u32, &BoxError>) -> bool {
//!     res.is_err()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // The client side: deadline, retries, breaker around a dependency.
//! let inventory = ServiceBuilder::new()
//!     .msp_timeout(Duration::from_millis(800))
//!     .msp_retry(
//!         RetryLayer::new(is_error)
//!             .max_attempts(3)
//!             .backoff(Backoff::constant(Duration::from_millis(20))?),
//!     )
//!     .msp_circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
//!     .service(service_fn(|sku: String| async move { Ok::<_, std::io::Error>(sku.len() as u32) }));
//!
//! // The server side: every route gets a deadline; errors become responses.
//! let app: Router = Router::new()
//!     .route(
//!         "/stock/{sku}",
//!         get(move |axum::extract::Path(sku): axum::extract::Path<String>| {
//!             let inventory = inventory.clone();
//!             async move {
//!                 match inventory.oneshot(sku).await {
//!                     Ok(n) => format!("{n} in stock"),
//!                     Err(_) => "unknown".to_owned(),
//!                 }
//!             }
//!         }),
//!     )
//!     .layer(
//!         ServiceBuilder::new()
//!             .msp_http_errors()
//!             .msp_timeout(Duration::from_secs(2)),
//!     );
//!
//! let res = app
//!     .oneshot(http::Request::get("/stock/abc").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(res.status(), http::StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Names
//!
//! No method is called just `http`: each HTTP-specific method names the
//! one thing it changes, and the same word means the same thing on every
//! layer.
//!
//! | method | on | what it does |
//! |---|---|---|
//! | `idempotent_http(..)` | [`RetryLayer`], [`HedgeLayer`] (constructors) | sends HTTP requests again only when that is safe: idempotent methods or an `Idempotency-Key`, replayable bodies ([`HttpPolicy`](retry::HttpPolicy)) |
//! | `classify_http_status()` | [`CircuitBreakerLayer`], [`BulkheadLayer`] | counts errors and `5xx` as failures, `4xx` as successes (short for `.classify(HttpClassifier::new())`) |
//! | `release_on_body_end()` | [`BulkheadLayer`] | holds the slot until the response body ends, not just the head |
//! | `answer_429()` | [`RateLimitLayer`], `RedisRateLimitLayer` | answers over-limit requests with a `429` response instead of failing them with [`RateLimited`] |
//! | `from_config(&…Config)` | every layer with a config | the layer from validated settings; the config's builder (`…Config::builder()`, `…ConfigBuilder::build()`) returns a `…ConfigError` |
//!
//! The [`ResilienceBuilderExt`] shortcuts are the module names with an
//! `msp_` prefix (`msp_timeout`, `msp_retry`, `msp_circuit_breaker`,
//! `msp_rate_limit`, `msp_bulkhead`, `msp_hedge`, `msp_fallback`,
//! `msp_chaos`, `msp_http_errors`), so tower's own `timeout`, `retry` and
//! `rate_limit` never shadow them.
//!
//! # Metrics
//!
//! Layers report through the [`metrics`](https://docs.rs/metrics) facade:
//! `msp_resilience_retries_total`, `msp_resilience_retry_budget_exhausted_total`,
//! `msp_resilience_hedges_total`, `msp_resilience_hedges_refused_total`,
//! `msp_resilience_fallbacks_total`, `msp_resilience_chaos_errors_total`,
//! `msp_resilience_chaos_delays_total`, and the breaker, limiter and
//! bulkhead metrics listed in their modules.
//!
//! # Feature flags
//!
//! - `redis`: one rate limit across many processes, enforced by an atomic
//!   script in Redis ([`rate_limit`]).
//! - `axum`: [`PeerAddr`](rate_limit::PeerAddr) also reads axum's
//!   `ConnectInfo<SocketAddr>`, so a per-IP limit under
//!   `into_make_service_with_connect_info` needs no reader of yours.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod builder;
pub mod bulkhead;
pub mod chaos;
pub mod circuit_breaker;
pub mod fallback;
pub mod hedge;
/// msp-core's HTTP contracts ([`msp_core::http`]), re-exported: its one
/// `HttpErrorLayer` answers this crate's errors, which register themselves.
pub use msp_core::http;
pub mod rate_limit;
pub mod retry;
mod sync;
pub mod timeout;

pub use crate::builder::ResilienceBuilderExt;
pub use crate::bulkhead::error::BulkheadFull;
pub use crate::bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer};
pub use crate::chaos::{Chaos, ChaosConfig, ChaosHandle, ChaosLayer};
pub use crate::circuit_breaker::error::CircuitOpen;
pub use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
pub use crate::fallback::{Fallback, FallbackLayer};
pub use crate::hedge::{Hedge, HedgeConfig, HedgeLayer};
pub use crate::http::{HttpError, HttpErrorLayer};
pub use crate::rate_limit::error::RateLimited;
pub use crate::rate_limit::{HttpRateLimit, HttpRateLimitLayer, Quota, RateLimit, RateLimitLayer};
pub use crate::retry::{BudgetExhausted, Retry, RetryBudget, RetryConfig, RetryLayer};
pub use crate::timeout::{
    Deadline, Elapsed, Timeout, TimeoutConfig, TimeoutLayer, TimeoutOverride,
};
