//! Error types of the rate limiter.

use http::StatusCode;
use msp_core::http::{Problem, ToProblem};
use std::fmt;
use std::sync::Once;
use std::time::Duration;

/// The request was over the rate limit; it was rejected, not delayed.
///
/// Downcast it from the `BoxError` of a [`RateLimit`](super::RateLimit)
/// service:
///
/// ```
/// use msp_resilience::rate_limit::error::RateLimited;
/// # let err: msp_core::BoxError = Box::new(RateLimited::new(std::time::Duration::from_secs(2), 10, std::time::Duration::from_secs(5)));
/// if let Some(limited) = err.downcast_ref::<RateLimited>() {
///     assert_eq!(limited.retry_after().as_secs(), 2);
/// }
/// ```
///
/// Behind [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) it is a
/// `429 Too Many Requests` problem with code `rate_limited` and
/// `Retry-After` (the type registers itself with
/// [`msp_core::http::register`] when first constructed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimited {
    retry_after: Duration,
    limit: u32,
    reset: Duration,
}

impl RateLimited {
    /// A rejection: try again after `retry_after`; the limit admits `limit`
    /// at once and is fully available again after `reset`.
    pub fn new(retry_after: Duration, limit: u32, reset: Duration) -> Self {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(msp_core::http::register::<RateLimited>);
        RateLimited {
            retry_after,
            limit,
            reset,
        }
    }

    /// When the next request would be admitted.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The burst of the quota that rejected the request.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Time until the full burst is available again.
    pub fn reset(&self) -> Duration {
        self.reset
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited (retry after {:?})", self.retry_after)
    }
}

impl std::error::Error for RateLimited {}

impl ToProblem for RateLimited {
    fn to_problem(&self) -> Problem {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        )
        .with_retry_after(Some(self.retry_after))
    }
}
