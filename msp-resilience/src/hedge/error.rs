//! Error types of the [`Hedge`](super::Hedge) middleware.

/// Why a [`HedgeConfig`](super::HedgeConfig) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidHedge {
    /// The percentile was outside `0 < p < 100`.
    #[error("hedge percentile must be between 0 and 100 (exclusive), got {0}")]
    Percentile(f64),
    /// The hedge budget was invalid.
    #[error(transparent)]
    Budget(#[from] crate::retry::error::InvalidBudget),
}
