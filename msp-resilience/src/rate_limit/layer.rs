use super::key::KeyedLimit;
use super::{HttpRateLimit, KeyedRateLimiter, RateLimit, RateLimiter};
use tower_layer::Layer;

/// Applies a rate limit to a service; over-limit requests fail at once with
/// [`RateLimited`](super::error::RateLimited).
///
/// Every service the layer makes, and every clone of them, checks the same
/// limit (it lives behind an `Arc`), so a limit holds under axum, which
/// clones the service for each request.
#[derive(Debug, Clone)]
pub struct RateLimitLayer<L> {
    limit: L,
}

impl RateLimitLayer<RateLimiter> {
    /// One limit for all requests.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer { limit: limiter }
    }
}

impl<K, X> RateLimitLayer<KeyedLimit<K, X>> {
    /// A limit per key, found in each request by `extractor`.
    pub fn keyed(limiter: KeyedRateLimiter<K>, extractor: X) -> Self {
        RateLimitLayer {
            limit: KeyedLimit::new(limiter, extractor),
        }
    }
}

impl<L> RateLimitLayer<L> {
    /// Any [`Limit`](super::Limit).
    pub fn from_limit(limit: L) -> Self {
        RateLimitLayer { limit }
    }

    /// Answers over-limit requests with `429 Too Many Requests` (and
    /// `Retry-After`, `RateLimit-*` headers) instead of failing them with
    /// an error; admitted responses get the `RateLimit-*` headers.
    pub fn answer_429(self) -> HttpRateLimitLayer<L> {
        HttpRateLimitLayer { limit: self.limit }
    }
}

impl<S, L: Clone> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limit.clone())
    }
}

/// A [`RateLimitLayer`] after [`answer_429`](RateLimitLayer::answer_429):
/// over-limit requests get a `429` response, admitted ones the
/// `RateLimit-*` headers.
#[derive(Debug, Clone)]
pub struct HttpRateLimitLayer<L> {
    limit: L,
}

impl<L> HttpRateLimitLayer<L> {
    /// Answers `429` over any [`Limit`](super::Limit).
    pub fn new(limit: L) -> Self {
        HttpRateLimitLayer { limit }
    }
}

impl<S, L: Clone> Layer<S> for HttpRateLimitLayer<L> {
    type Service = HttpRateLimit<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRateLimit::new(inner, self.limit.clone())
    }
}
