//! Hedge settings.

use crate::retry::BudgetConfig;
use crate::retry::error::BudgetConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a hedge configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HedgeConfigError {
    /// The percentile was outside `0 < p < 100`.
    #[error("hedge percentile must be between 0 and 100 (exclusive), got {0}")]
    Percentile(f64),
    /// The hedge budget was invalid.
    #[error(transparent)]
    Budget(#[from] BudgetConfigError),
}

/// When the hedge is sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HedgeDelay {
    /// A fixed delay after the first request.
    Fixed(#[serde(with = "humantime_serde")] Duration),
    /// The given percentile (e.g. `95.0`) of recent latencies; no hedge
    /// until `min_samples` latencies were seen.
    Percentile {
        /// The percentile, between 0 and 100.
        percentile: f64,
        /// Latencies needed before hedging starts (default 20).
        #[serde(default = "default_min_samples")]
        min_samples: u64,
        /// How long a latency counts (between one and two windows; default
        /// 30 s).
        #[serde(with = "humantime_serde", default = "default_window")]
        window: Duration,
    },
}

impl HedgeDelay {
    /// The `percentile` of recent latencies, with the default
    /// `min_samples` (20) and `window` (30 s).
    pub fn percentile(percentile: f64) -> Self {
        HedgeDelay::Percentile {
            percentile,
            min_samples: default_min_samples(),
            window: default_window(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), HedgeConfigError> {
        match *self {
            HedgeDelay::Percentile { percentile, .. }
                if !(percentile > 0.0 && percentile < 100.0) =>
            {
                Err(HedgeConfigError::Percentile(percentile))
            }
            _ => Ok(()),
        }
    }
}

fn default_min_samples() -> u64 {
    20
}

pub(crate) fn default_window() -> Duration {
    Duration::from_secs(30)
}

/// The default hedge budget: 10 % of the requests of the last 10 s, no
/// per-second floor.
pub(crate) fn default_budget() -> Option<BudgetConfig> {
    Some(BudgetConfig {
        percent: 10.0,
        min_per_second: 0,
        ttl: Duration::from_secs(10),
    })
}

fn default_body() -> usize {
    crate::retry::DEFAULT_MAX_REPLAY_BODY
}

/// Validated settings of an HTTP [`HedgeLayer`](super::HedgeLayer)
/// ([`HedgeLayer::from_config`](super::HedgeLayer::from_config)). Build
/// with [`HedgeConfig::builder`] or deserialize.
///
/// ```
/// use msp_resilience::hedge::{HedgeConfig, HedgeDelay, HedgeLayer};
///
/// let from_file: HedgeConfig = serde_json::from_str(
///     r#"{"delay": {"percentile": {"percentile": 95.0}}, "budget": null}"#,
/// )?;
/// let from_code = HedgeConfig::builder(HedgeDelay::percentile(95.0)).budget(None).build()?;
/// assert_eq!(from_file, from_code);
/// let layer = HedgeLayer::from_config(&from_file);
/// # drop(layer);
///
/// // Unknown fields are errors, not silently ignored; so are invalid values.
/// assert!(serde_json::from_str::<HedgeConfig>(r#"{"delay": {"fixed": "50ms"}, "max_bdy": 1}"#).is_err());
/// assert!(serde_json::from_str::<HedgeConfig>(r#"{"delay": {"percentile": {"percentile": 100.0}}}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HedgeConfigBuilder", into = "HedgeConfigBuilder")]
pub struct HedgeConfig {
    b: HedgeConfigBuilder,
}

impl HedgeConfig {
    /// Starts from `delay` and the defaults listed on
    /// [`HedgeConfigBuilder`].
    pub fn builder(delay: HedgeDelay) -> HedgeConfigBuilder {
        HedgeConfigBuilder {
            delay,
            budget: default_budget(),
            max_body: default_body(),
        }
    }

    /// When the hedge is sent.
    pub fn delay(&self) -> HedgeDelay {
        self.b.delay
    }

    /// The hedge budget (`None`: every slow request is hedged).
    pub fn budget(&self) -> Option<BudgetConfig> {
        self.b.budget
    }

    /// Largest request body hedged, in bytes.
    pub fn max_body(&self) -> usize {
        self.b.max_body
    }
}

/// Builder and serde form of [`HedgeConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `delay` | required | `{fixed: "50ms"}` or `{percentile: {percentile: 95.0, min_samples: 20, window: "30s"}}` |
/// | `budget` | `{percent: 10, min_per_second: 0, ttl: 10s}` | caps hedges; `null` for no cap |
/// | `max_body` | 65536 | largest request body hedged, bytes |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct HedgeConfigBuilder {
    delay: HedgeDelay,
    #[serde(default = "default_budget")]
    budget: Option<BudgetConfig>,
    #[serde(default = "default_body")]
    max_body: usize,
}

impl HedgeConfigBuilder {
    /// When the hedge is sent.
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.delay = delay;
        self
    }

    /// The hedge budget; `None` for no cap.
    pub fn budget(mut self, budget: Option<BudgetConfig>) -> Self {
        self.budget = budget;
        self
    }

    /// Largest request body hedged, in bytes.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<HedgeConfig, HedgeConfigError> {
        self.delay.validate()?;
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        Ok(HedgeConfig { b: self })
    }
}

impl TryFrom<HedgeConfigBuilder> for HedgeConfig {
    type Error = HedgeConfigError;
    fn try_from(b: HedgeConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<HedgeConfig> for HedgeConfigBuilder {
    fn from(c: HedgeConfig) -> Self {
        c.b
    }
}
