//! Error types of the [`Chaos`](super::Chaos) middleware.

/// The default injected error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("chaos: injected fault")]
pub struct InjectedFault;

/// Why a [`ChaosConfig`](super::ChaosConfig) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosConfigError {
    /// A rate was outside `0.0..=1.0`.
    #[error("chaos {name} must be between 0.0 and 1.0, got {value}")]
    Rate {
        /// Which rate.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `latency_max` was below `latency`.
    #[error("chaos latency_max ({max:?}) is below latency ({min:?})")]
    LatencyRange {
        /// The minimum latency.
        min: std::time::Duration,
        /// The maximum latency.
        max: std::time::Duration,
    },
}
