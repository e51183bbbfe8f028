//! Time shared across the msp crates: the timeout marker [`Elapsed`], the
//! request [`Deadline`] extension, and [`ceil_secs`] for `Retry-After`.
//!
//! [`Elapsed`] is the one error type that means "a deadline passed" in
//! every msp crate: msp-resilience's `Timeout` returns it, and
//! [`classify::error_kind`](crate::classify::error_kind) and
//! [`http::problem_for`](crate::http::problem_for) recognise it by
//! downcasting (never by its text).
//!
//! # Example
//!
//! ```
//! use msp_core::classify::{error_kind, ErrorKind};
//! use msp_core::time::{ceil_secs, Deadline};
//! use msp_core::{BoxError, Elapsed};
//! use std::time::Duration;
//!
//! let err: BoxError = Elapsed::new().into();
//! assert!(err.is::<Elapsed>());
//! assert_eq!(error_kind(&*err), ErrorKind::Timeout);
//!
//! // Retry-After is whole seconds, rounded up.
//! assert_eq!(ceil_secs(Duration::from_millis(1200)), 2);
//! assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let deadline = Deadline::after(Duration::from_millis(250));
//! assert_eq!(deadline.remaining(), Duration::from_millis(250));
//! # }
//! ```

use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// A duration in whole seconds, rounded up (`1.2 s` → `2`), saturating at
/// `u64::MAX`.
///
/// The rounding `Retry-After` and TTLs in seconds need: a client told to
/// wait `1` when the real wait is `1.2 s` comes back too early.
///
/// ```
/// use msp_core::time::ceil_secs;
/// use std::time::Duration;
///
/// assert_eq!(ceil_secs(Duration::ZERO), 0);
/// assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
/// assert_eq!(ceil_secs(Duration::from_millis(2500)), 3);
/// assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
/// ```
pub const fn ceil_secs(d: Duration) -> u64 {
    let whole = d.as_secs();
    if d.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

/// The request did not complete before its deadline: the core timeout
/// marker.
///
/// Every msp crate that gives up on a deadline returns this type (boxed,
/// downcastable), so [`error_kind`](crate::classify::error_kind) reports it
/// as [`ErrorKind::Timeout`](crate::classify::ErrorKind::Timeout) and
/// [`HttpErrorLayer`](crate::http::HttpErrorLayer) answers it with
/// `504 Gateway Timeout`, both by downcasting.
///
/// ```
/// use msp_core::Elapsed;
///
/// let err: msp_core::BoxError = Elapsed::new().into();
/// assert!(err.downcast_ref::<Elapsed>().is_some());
/// assert_eq!(err.to_string(), "request timed out");
/// assert_eq!(format!("{err:?}"), "Elapsed");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Elapsed(());

impl Elapsed {
    /// A new `Elapsed` error.
    pub const fn new() -> Self {
        Elapsed(())
    }
}

impl fmt::Debug for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Elapsed")
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request timed out")
    }
}

impl std::error::Error for Elapsed {}

/// The absolute deadline of a request, as a request extension.
///
/// One type for every crate: msp-resilience's `Timeout` inserts it and caps
/// its own timeout with it, and any client (the discovery client, the
/// gateway's proxy) can read it to stop waiting when the caller stops. The
/// wire form is the [`DEADLINE_MS`](crate::http::header::DEADLINE_MS)
/// header (remaining milliseconds).
///
/// Measured on tokio's clock, so `tokio::time::pause()` controls it in
/// tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The deadline `timeout` from now (saturating far in the future).
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        Deadline(
            now.checked_add(timeout)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30)),
        )
    }

    /// The time left until the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.0 <= Instant::now()
    }
}
