//! Bulkhead settings.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a bulkhead configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BulkheadConfigError {
    /// `max_concurrent` was zero.
    #[error("bulkhead max_concurrent must be at least 1")]
    ZeroConcurrency,
    /// The adaptive bounds do not hold `min ≤ max_concurrent ≤ max`, or
    /// `min` is zero.
    #[error(
        "bulkhead adaptive limits must satisfy 1 <= min ({min}) <= max_concurrent ({initial}) <= max ({max})"
    )]
    AdaptiveBounds {
        /// Lower bound.
        min: u32,
        /// Initial limit (`max_concurrent`).
        initial: u32,
        /// Upper bound.
        max: u32,
    },
    /// The decrease factor is not in `[0.1, 1)`.
    #[error("bulkhead adaptive decrease factor must be in [0.1, 1), got {0}")]
    DecreaseFactor(f64),
}

/// Settings of the adaptive (AIMD) limit.
///
/// After each call: a success faster than `latency_threshold`, while the
/// limit was in use (at least half of it in flight), raises the limit by
/// `increase`; a failure (by the layer's classifier) or a call slower than
/// the threshold multiplies it by `decrease_factor`. The limit stays in
/// `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Adaptive {
    /// Lowest limit (default 1).
    pub min: u32,
    /// Highest limit (default 1000).
    pub max: u32,
    /// Calls slower than this count as overload (default 1 s).
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
    /// Added on success (default 1).
    pub increase: u32,
    /// Multiplies the limit on failure or slowness (default 0.9).
    pub decrease_factor: f64,
}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive {
            min: 1,
            max: 1000,
            latency_threshold: Duration::from_secs(1),
            increase: 1,
            decrease_factor: 0.9,
        }
    }
}

/// Validated bulkhead settings; build with [`BulkheadConfig::builder`] or
/// deserialize.
///
/// ```
/// use msp_resilience::bulkhead::BulkheadConfig;
/// let c: BulkheadConfig = serde_json::from_str(
///     r#"{"max_concurrent": 20, "max_queue": 50, "max_wait": "250ms",
///         "adaptive": {"min": 5, "max": 100, "latency_threshold": "300ms"}}"#,
/// )?;
/// assert_eq!(c.max_concurrent(), 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "BulkheadConfigBuilder", into = "BulkheadConfigBuilder")]
pub struct BulkheadConfig {
    pub(crate) b: BulkheadConfigBuilder,
}

impl BulkheadConfig {
    /// Starts from the defaults: 100 concurrent calls, no queue.
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfigBuilder::default()
    }

    /// The name (a metrics label).
    pub fn name(&self) -> &str {
        &self.b.name
    }

    /// Calls allowed at once (the initial limit when adaptive).
    pub fn max_concurrent(&self) -> u32 {
        self.b.max_concurrent
    }

    /// Calls allowed to wait for a slot.
    pub fn max_queue(&self) -> u32 {
        self.b.max_queue
    }

    /// How long a queued call may wait (none: until a slot frees).
    pub fn max_wait(&self) -> Option<Duration> {
        self.b.max_wait
    }

    /// The adaptive limit, if on.
    pub fn adaptive(&self) -> Option<Adaptive> {
        self.b.adaptive
    }
}

/// Builder and serde form of [`BulkheadConfig`].
///
/// Fields: `name` (`"default"`), `max_concurrent` (100), `max_queue` (0:
/// reject at once when full), `max_wait` (none), `adaptive` (off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct BulkheadConfigBuilder {
    name: String,
    max_concurrent: u32,
    max_queue: u32,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    max_wait: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive: Option<Adaptive>,
}

impl Default for BulkheadConfigBuilder {
    fn default() -> Self {
        BulkheadConfigBuilder {
            name: "default".to_owned(),
            max_concurrent: 100,
            max_queue: 0,
            max_wait: None,
            adaptive: None,
        }
    }
}

impl BulkheadConfigBuilder {
    /// The name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Calls allowed at once.
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = n;
        self
    }

    /// Calls allowed to wait for a slot.
    pub fn max_queue(mut self, n: u32) -> Self {
        self.max_queue = n;
        self
    }

    /// How long a queued call may wait.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }

    /// Turns on the adaptive limit, starting at `max_concurrent`.
    pub fn adaptive(mut self, a: Adaptive) -> Self {
        self.adaptive = Some(a);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<BulkheadConfig, BulkheadConfigError> {
        if self.max_concurrent == 0 {
            return Err(BulkheadConfigError::ZeroConcurrency);
        }
        if let Some(a) = self.adaptive {
            if a.min == 0 || a.min > self.max_concurrent || self.max_concurrent > a.max {
                return Err(BulkheadConfigError::AdaptiveBounds {
                    min: a.min,
                    initial: self.max_concurrent,
                    max: a.max,
                });
            }
            if !(0.1..1.0).contains(&a.decrease_factor) {
                return Err(BulkheadConfigError::DecreaseFactor(a.decrease_factor));
            }
        }
        Ok(BulkheadConfig { b: self })
    }
}

impl TryFrom<BulkheadConfigBuilder> for BulkheadConfig {
    type Error = BulkheadConfigError;
    fn try_from(b: BulkheadConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<BulkheadConfig> for BulkheadConfigBuilder {
    fn from(c: BulkheadConfig) -> Self {
        c.b
    }
}
