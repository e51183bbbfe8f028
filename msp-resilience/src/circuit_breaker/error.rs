//! Error types of the circuit breaker.

use http::StatusCode;
use msp_core::http::{Problem, ToProblem};
use std::fmt;
use std::sync::Once;
use std::time::Duration;

/// The call was rejected because the breaker is open (or half-open with
/// every probe permit taken, or forced open).
///
/// Small and downcastable from the `BoxError` a [`CircuitBreaker`] service
/// returns:
///
/// ```
/// use msp_resilience::circuit_breaker::error::CircuitOpen;
/// # let err: msp_core::BoxError = Box::new(CircuitOpen::new(None));
/// if let Some(open) = err.downcast_ref::<CircuitOpen>() {
///     println!("try again in {:?}", open.retry_after());
/// }
/// ```
///
/// Behind [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) it is a
/// `503 Service Unavailable` problem with code `circuit_open` and a
/// `Retry-After` when the open time left is known (the type registers
/// itself with [`msp_core::http::register`] when first constructed).
///
/// [`CircuitBreaker`]: super::CircuitBreaker
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitOpen {
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection; `retry_after` is the open time left, if known.
    pub fn new(retry_after: Option<Duration>) -> Self {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(msp_core::http::register::<CircuitOpen>);
        CircuitOpen { retry_after }
    }

    /// How long the breaker stays open, when known: `None` when it is forced
    /// open or half-open with all probe permits taken.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "circuit breaker is open (retry in {d:?})"),
            None => f.write_str("circuit breaker is open"),
        }
    }
}

impl std::error::Error for CircuitOpen {}

impl ToProblem for CircuitOpen {
    fn to_problem(&self) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit_open",
            "circuit breaker is open",
        )
        .with_retry_after(self.retry_after)
    }
}

/// The error of [`Breaker::call`](super::Breaker::call): rejected, or the
/// call's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker rejected the call.
    #[error(transparent)]
    Open(#[from] CircuitOpen),
    /// The call ran and failed.
    #[error("{0}")]
    Inner(E),
}
