//! Shortcuts on [`tower::ServiceBuilder`] for every msp-resilience layer.
//!
//! Bring [`ResilienceBuilderExt`] into scope and a stack reads top to
//! bottom, outermost first, like any `ServiceBuilder` chain. Every method
//! is the layer's module name with an `msp_` prefix, so none can be
//! mistaken for (or shadowed by) tower's own `timeout`, `retry` or
//! `rate_limit`. A usual order for a client:
//!
//! 1. [`msp_http_errors`](ResilienceBuilderExt::msp_http_errors) (HTTP
//!    servers: typed errors become responses),
//! 2. [`msp_fallback`](ResilienceBuilderExt::msp_fallback),
//! 3. [`msp_timeout`](ResilienceBuilderExt::msp_timeout) — the overall
//!    deadline,
//! 4. [`msp_retry`](ResilienceBuilderExt::msp_retry) (or
//!    [`msp_hedge`](ResilienceBuilderExt::msp_hedge)),
//! 5. [`msp_circuit_breaker`](ResilienceBuilderExt::msp_circuit_breaker) —
//!    inside the retry, so each attempt counts and an open circuit stops
//!    retries quickly,
//! 6. [`msp_rate_limit`](ResilienceBuilderExt::msp_rate_limit) and
//!    [`msp_bulkhead`](ResilienceBuilderExt::msp_bulkhead) — closest to the
//!    call.
//!
//! # Example
//!
//! ```
//! use msp_core::backoff::Backoff;
//! use msp_resilience::ResilienceBuilderExt;
//! use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
//! use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//! use msp_resilience::rate_limit::{Quota, RateLimitLayer, RateLimiter};
//! use msp_resilience::retry::RetryLayer;
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .msp_timeout(Duration::from_secs(2))
//!     .msp_retry(
//!         RetryLayer::new(|_: &u32, res: Result<&u32, &BoxError>| res.is_err())
//!             .backoff(Backoff::constant(Duration::from_millis(10))?),
//!     )
//!     .msp_circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
//!     .msp_rate_limit(RateLimitLayer::new(RateLimiter::new(Quota::per_second(1000)?)))
//!     .msp_bulkhead(BulkheadLayer::new(BulkheadConfig::builder().max_concurrent(64).build()?))
//!     .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) }));
//!
//! assert_eq!(svc.oneshot(21).await?, 42);
//! # Ok(())
//! # }
//! ```

use crate::bulkhead::BulkheadLayer;
use crate::chaos::ChaosLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::fallback::FallbackLayer;
use crate::hedge::HedgeLayer;
use crate::http::HttpErrorLayer;
use crate::rate_limit::{HttpRateLimitLayer, RateLimitLayer};
use crate::retry::RetryLayer;
use crate::timeout::{TimeoutConfig, TimeoutLayer};
use std::time::Duration;
use tower::ServiceBuilder;
use tower_layer::Stack;

impl From<Duration> for TimeoutLayer {
    fn from(timeout: Duration) -> Self {
        TimeoutLayer::new(timeout)
    }
}

impl From<&TimeoutConfig> for TimeoutLayer {
    fn from(config: &TimeoutConfig) -> Self {
        TimeoutLayer::from_config(config)
    }
}

/// Adds the msp-resilience layers to a [`ServiceBuilder`]; see the
/// [module docs](self).
pub trait ResilienceBuilderExt<L>: sealed::Sealed {
    /// A deadline: a `Duration`, a [`TimeoutConfig`] or a [`TimeoutLayer`].
    fn msp_timeout(
        self,
        timeout: impl Into<TimeoutLayer>,
    ) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// Retries, with a [`RetryLayer`].
    fn msp_retry<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>>;

    /// A [`CircuitBreakerLayer`].
    fn msp_circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// A rate limit: a [`RateLimitLayer`] (rejects with an error), the
    /// [`HttpRateLimitLayer`] its
    /// [`answer_429`](RateLimitLayer::answer_429) makes, or (feature
    /// `redis`) their Redis counterparts.
    fn msp_rate_limit<R: AnyRateLimitLayer>(self, layer: R) -> ServiceBuilder<Stack<R, L>>;

    /// A [`BulkheadLayer`].
    fn msp_bulkhead<C, M>(
        self,
        layer: BulkheadLayer<C, M>,
    ) -> ServiceBuilder<Stack<BulkheadLayer<C, M>, L>>;

    /// Hedged requests, with a [`HedgeLayer`].
    fn msp_hedge<P>(self, layer: HedgeLayer<P>) -> ServiceBuilder<Stack<HedgeLayer<P>, L>>;

    /// A [`FallbackLayer`].
    fn msp_fallback<H, W>(
        self,
        layer: FallbackLayer<H, W>,
    ) -> ServiceBuilder<Stack<FallbackLayer<H, W>, L>>;

    /// Fault injection, with a [`ChaosLayer`].
    fn msp_chaos(self, layer: ChaosLayer) -> ServiceBuilder<Stack<ChaosLayer, L>>;

    /// Typed errors to HTTP responses with the default
    /// [`HttpErrorLayer`].
    fn msp_http_errors(self) -> ServiceBuilder<Stack<HttpErrorLayer, L>>;
}

/// The rate-limit layers [`msp_rate_limit`](ResilienceBuilderExt::msp_rate_limit)
/// accepts: [`RateLimitLayer`], [`HttpRateLimitLayer`] and, with the
/// `redis` feature, `RedisRateLimitLayer` and `HttpRedisRateLimitLayer`.
/// Sealed.
pub trait AnyRateLimitLayer: sealed::RateLimit {}

impl<Lim> AnyRateLimitLayer for RateLimitLayer<Lim> {}
impl<Lim> AnyRateLimitLayer for HttpRateLimitLayer<Lim> {}
#[cfg(feature = "redis")]
impl<X> AnyRateLimitLayer for crate::rate_limit::RedisRateLimitLayer<X> {}
#[cfg(feature = "redis")]
impl<X> AnyRateLimitLayer for crate::rate_limit::HttpRedisRateLimitLayer<X> {}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}

    pub trait RateLimit {}
    impl<Lim> RateLimit for crate::rate_limit::RateLimitLayer<Lim> {}
    impl<Lim> RateLimit for crate::rate_limit::HttpRateLimitLayer<Lim> {}
    #[cfg(feature = "redis")]
    impl<X> RateLimit for crate::rate_limit::RedisRateLimitLayer<X> {}
    #[cfg(feature = "redis")]
    impl<X> RateLimit for crate::rate_limit::HttpRedisRateLimitLayer<X> {}
}

impl<L> ResilienceBuilderExt<L> for ServiceBuilder<L> {
    fn msp_timeout(
        self,
        timeout: impl Into<TimeoutLayer>,
    ) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(timeout.into())
    }

    fn msp_retry<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>> {
        self.layer(layer)
    }

    fn msp_circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    fn msp_rate_limit<R: AnyRateLimitLayer>(self, layer: R) -> ServiceBuilder<Stack<R, L>> {
        self.layer(layer)
    }

    fn msp_bulkhead<C, M>(
        self,
        layer: BulkheadLayer<C, M>,
    ) -> ServiceBuilder<Stack<BulkheadLayer<C, M>, L>> {
        self.layer(layer)
    }

    fn msp_hedge<P>(self, layer: HedgeLayer<P>) -> ServiceBuilder<Stack<HedgeLayer<P>, L>> {
        self.layer(layer)
    }

    fn msp_fallback<H, W>(
        self,
        layer: FallbackLayer<H, W>,
    ) -> ServiceBuilder<Stack<FallbackLayer<H, W>, L>> {
        self.layer(layer)
    }

    fn msp_chaos(self, layer: ChaosLayer) -> ServiceBuilder<Stack<ChaosLayer, L>> {
        self.layer(layer)
    }

    fn msp_http_errors(self) -> ServiceBuilder<Stack<HttpErrorLayer, L>> {
        self.layer(HttpErrorLayer::new())
    }
}
