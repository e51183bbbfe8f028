//! Error types of the [`Retry`](super::Retry) middleware.

use http::StatusCode;
use msp_core::http::{Problem, ToProblem};
use std::fmt;
use std::sync::Once;

/// A retry was needed but the [`RetryBudget`](super::RetryBudget) was
/// exhausted.
///
/// Only returned when the layer is built with
/// [`budget_exhausted_error(true)`](super::RetryLayer::budget_exhausted_error);
/// by default the last response or error is returned instead. Behind
/// [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) it is a
/// `503 Service Unavailable` problem with code `retry_budget_exhausted`
/// (the type registers itself with [`msp_core::http::register`] when first
/// constructed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted(());

impl BudgetExhausted {
    /// A new `BudgetExhausted` error.
    pub fn new() -> Self {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(msp_core::http::register::<BudgetExhausted>);
        BudgetExhausted(())
    }
}

impl Default for BudgetExhausted {
    fn default() -> Self {
        Self::new()
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

impl ToProblem for BudgetExhausted {
    fn to_problem(&self) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry_budget_exhausted",
            "retry budget exhausted",
        )
    }
}

pub use super::body::ReplayError;
pub use super::budget::BudgetConfigError;

pub use super::config::RetryConfigError;
