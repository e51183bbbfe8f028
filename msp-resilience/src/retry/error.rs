//! Error types of the [`Retry`](super::Retry) middleware.

use std::fmt;

/// A retry was needed but the [`RetryBudget`](super::RetryBudget) was
/// exhausted.
///
/// Only returned when the layer is built with
/// [`budget_exhausted_error(true)`](super::RetryLayer::budget_exhausted_error);
/// by default the last response or error is returned instead. The
/// [HTTP adapter](crate::http) answers it with `503 Service Unavailable`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetExhausted(());

impl BudgetExhausted {
    /// A new `BudgetExhausted` error.
    pub const fn new() -> Self {
        BudgetExhausted(())
    }
}

impl fmt::Debug for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BudgetExhausted")
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry budget exhausted")
    }
}

impl std::error::Error for BudgetExhausted {}

pub use super::body::ReplayError;
pub use super::budget::InvalidBudget;

/// Why a [`RetryConfig`](super::RetryConfig) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRetryConfig {
    /// `max_attempts` was zero.
    #[error("retry max_attempts must be at least 1")]
    ZeroAttempts,
    /// The budget settings were invalid.
    #[error(transparent)]
    Budget(#[from] InvalidBudget),
    /// A status code was outside 100..=999.
    #[error("invalid HTTP status code {0}")]
    Status(u16),
}
