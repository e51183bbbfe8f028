//! Error types of the [`Timeout`](super::Timeout) middleware.

use std::fmt;

/// The request did not complete before its deadline.
///
/// Returned (boxed, downcastable) by [`Timeout`](super::Timeout) and by the
/// per-try timeout of [`Retry`](crate::retry::Retry).
/// [`msp_core::classify::error_kind`] reports it as
/// [`ErrorKind::Timeout`](msp_core::classify::ErrorKind::Timeout), and the
/// [HTTP adapter](crate::http) answers it with `504 Gateway Timeout`.
///
/// ```
/// use msp_core::classify::{error_kind, ErrorKind};
/// use msp_resilience::timeout::error::Elapsed;
///
/// let err: msp_core::BoxError = Elapsed::new().into();
/// assert!(err.is::<Elapsed>());
/// assert_eq!(error_kind(&*err), ErrorKind::Timeout);
/// assert_eq!(err.to_string(), "request timed out");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
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
