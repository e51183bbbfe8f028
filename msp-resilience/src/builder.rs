//! Shortcuts on [`tower::ServiceBuilder`] for every msp-resilience layer.
//!
//! Bring [`ResilienceBuilderExt`] into scope and a stack reads top to
//! bottom, outermost first, like any `ServiceBuilder` chain. A usual order
//! for a client:
//!
//! 1. [`http_errors`](ResilienceBuilderExt::http_errors) (HTTP servers:
//!    typed errors become responses),
//! 2. [`fallback`](ResilienceBuilderExt::fallback),
//! 3. [`timeout_with`](ResilienceBuilderExt::timeout_with) — the overall
//!    deadline,
//! 4. [`retry_with`](ResilienceBuilderExt::retry_with) (or
//!    [`hedge`](ResilienceBuilderExt::hedge)),
//! 5. [`circuit_breaker`](ResilienceBuilderExt::circuit_breaker) — inside
//!    the retry, so each attempt counts and an open circuit stops retries
//!    quickly,
//! 6. [`rate_limit_with`](ResilienceBuilderExt::rate_limit_with) and
//!    [`bulkhead`](ResilienceBuilderExt::bulkhead) — closest to the call.
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
//!     .timeout_with(Duration::from_secs(2))
//!     .retry_with(
//!         RetryLayer::new(|_: &u32, res: Result<&u32, &BoxError>| res.is_err())
//!             .backoff(Backoff::constant(Duration::from_millis(10))?),
//!     )
//!     .circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
//!     .rate_limit_with(RateLimitLayer::new(RateLimiter::new(Quota::per_second(1000)?)))
//!     .bulkhead(BulkheadLayer::new(BulkheadConfig::builder().max_concurrent(64).build()?))
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
    fn timeout_with(
        self,
        timeout: impl Into<TimeoutLayer>,
    ) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// Retries, with a [`RetryLayer`].
    fn retry_with<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>>;

    /// A [`CircuitBreakerLayer`].
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// A [`RateLimitLayer`] (rejects with an error).
    fn rate_limit_with<Lim>(
        self,
        layer: RateLimitLayer<Lim>,
    ) -> ServiceBuilder<Stack<RateLimitLayer<Lim>, L>>;

    /// An [`HttpRateLimitLayer`] (answers `429` itself).
    fn http_rate_limit<Lim>(
        self,
        layer: HttpRateLimitLayer<Lim>,
    ) -> ServiceBuilder<Stack<HttpRateLimitLayer<Lim>, L>>;

    /// A [`BulkheadLayer`].
    fn bulkhead<C, M>(
        self,
        layer: BulkheadLayer<C, M>,
    ) -> ServiceBuilder<Stack<BulkheadLayer<C, M>, L>>;

    /// Hedged requests, with a [`HedgeLayer`].
    fn hedge<P>(self, layer: HedgeLayer<P>) -> ServiceBuilder<Stack<HedgeLayer<P>, L>>;

    /// A [`FallbackLayer`].
    fn fallback<H, W>(
        self,
        layer: FallbackLayer<H, W>,
    ) -> ServiceBuilder<Stack<FallbackLayer<H, W>, L>>;

    /// Fault injection, with a [`ChaosLayer`].
    fn chaos(self, layer: ChaosLayer) -> ServiceBuilder<Stack<ChaosLayer, L>>;

    /// Typed errors to HTTP responses with the default
    /// [`HttpErrorLayer`].
    fn http_errors(self) -> ServiceBuilder<Stack<HttpErrorLayer, L>>;
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> ResilienceBuilderExt<L> for ServiceBuilder<L> {
    fn timeout_with(
        self,
        timeout: impl Into<TimeoutLayer>,
    ) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(timeout.into())
    }

    fn retry_with<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>> {
        self.layer(layer)
    }

    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    fn rate_limit_with<Lim>(
        self,
        layer: RateLimitLayer<Lim>,
    ) -> ServiceBuilder<Stack<RateLimitLayer<Lim>, L>> {
        self.layer(layer)
    }

    fn http_rate_limit<Lim>(
        self,
        layer: HttpRateLimitLayer<Lim>,
    ) -> ServiceBuilder<Stack<HttpRateLimitLayer<Lim>, L>> {
        self.layer(layer)
    }

    fn bulkhead<C, M>(
        self,
        layer: BulkheadLayer<C, M>,
    ) -> ServiceBuilder<Stack<BulkheadLayer<C, M>, L>> {
        self.layer(layer)
    }

    fn hedge<P>(self, layer: HedgeLayer<P>) -> ServiceBuilder<Stack<HedgeLayer<P>, L>> {
        self.layer(layer)
    }

    fn fallback<H, W>(
        self,
        layer: FallbackLayer<H, W>,
    ) -> ServiceBuilder<Stack<FallbackLayer<H, W>, L>> {
        self.layer(layer)
    }

    fn chaos(self, layer: ChaosLayer) -> ServiceBuilder<Stack<ChaosLayer, L>> {
        self.layer(layer)
    }

    fn http_errors(self) -> ServiceBuilder<Stack<HttpErrorLayer, L>> {
        self.layer(HttpErrorLayer::new())
    }
}
