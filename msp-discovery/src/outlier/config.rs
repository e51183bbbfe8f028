//! Outlier detection settings: [`OutlierConfig`], built and checked by
//! [`OutlierConfigBuilder`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The failure-rate detector: at least `threshold` of at least
/// `min_requests` calls failed within one `window`. Checked by
/// [`OutlierConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureRate {
    /// The failing fraction that ejects (0.0–1.0, exclusive of 0).
    pub threshold: f64,
    /// Calls needed in the window before the rate counts.
    pub min_requests: u32,
    /// The counting window (tumbling, > 0).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for FailureRate {
    /// 50 % of at least 20 calls in 10 s.
    fn default() -> Self {
        FailureRate {
            threshold: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
        }
    }
}

/// Validated passive outlier detection settings (see the
/// [module docs](super)).
///
/// Build with [`OutlierConfig::builder`] or deserialize (durations as
/// `"30s"`); either way the values are checked.
///
/// ```
/// use msp_discovery::outlier::OutlierConfig;
/// use std::time::Duration;
///
/// let config: OutlierConfig = serde_saphyr::from_str(
///     "
/// consecutive_failures: 3
/// failure_rate: {threshold: 0.25, min_requests: 50, window: 30s}
/// base_ejection_time: 10s
/// max_ejection_time: 2m
/// max_ejected_percent: 20
/// ",
/// )?;
/// assert_eq!(config.consecutive_failures(), Some(3));
/// assert_eq!(config.ejection_time(2), Duration::from_secs(20));
///
/// // Invalid values and unknown fields are errors.
/// assert!(serde_saphyr::from_str::<OutlierConfig>("max_ejected_percent: 120").is_err());
/// assert!(serde_saphyr::from_str::<OutlierConfig>("consecutive_failure: 3").is_err());
///
/// // The same from code.
/// let config = OutlierConfig::builder()
///     .consecutive_failures(3)
///     .base_ejection_time(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.base_ejection_time(), Duration::from_secs(10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "OutlierConfigBuilder", into = "OutlierConfigBuilder")]
pub struct OutlierConfig {
    b: OutlierConfigBuilder,
}

impl OutlierConfig {
    /// Starts from the defaults listed on [`OutlierConfigBuilder`].
    pub fn builder() -> OutlierConfigBuilder {
        OutlierConfigBuilder::default()
    }

    /// Failures in a row that eject, if that detector is on.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.b.consecutive_failures
    }

    /// The failure-rate detector, if on.
    pub fn failure_rate(&self) -> Option<&FailureRate> {
        self.b.failure_rate.as_ref()
    }

    /// The duration of a first ejection.
    pub fn base_ejection_time(&self) -> Duration {
        self.b.base_ejection_time
    }

    /// The longest ejection.
    pub fn max_ejection_time(&self) -> Duration {
        self.b.max_ejection_time
    }

    /// The percentage of endpoints that may be ejected at once.
    pub fn max_ejected_percent(&self) -> u8 {
        self.b.max_ejected_percent
    }

    /// How many of `total` endpoints may be ejected at once:
    /// `max(1, ⌊total × percent / 100⌋)`, but never all of them.
    pub fn max_ejected(&self, total: usize) -> usize {
        let by_percent = total * usize::from(self.b.max_ejected_percent) / 100;
        by_percent.max(1).min(total.saturating_sub(1))
    }

    /// How long the `n`-th ejection (1-based) lasts:
    /// `base_ejection_time × n`, capped at `max_ejection_time`.
    pub fn ejection_time(&self, n: u32) -> Duration {
        self.b
            .base_ejection_time
            .saturating_mul(n.max(1))
            .min(self.b.max_ejection_time)
    }
}

/// Builder and serde form of [`OutlierConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `consecutive_failures` | 5 | failures in a row that eject (`null`: detector off) |
/// | `failure_rate` | `{threshold: 0.5, min_requests: 20, window: 10s}` | see [`FailureRate`] (`null`: detector off) |
/// | `base_ejection_time` | `30s` | first ejection; the `n`-th lasts `n` times as long |
/// | `max_ejection_time` | `5m` | cap on an ejection (≥ the base) |
/// | `max_ejected_percent` | 10 | at most this percentage ejected at once (one may always be, never all) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct OutlierConfigBuilder {
    consecutive_failures: Option<u32>,
    failure_rate: Option<FailureRate>,
    #[serde(with = "humantime_serde")]
    base_ejection_time: Duration,
    #[serde(with = "humantime_serde")]
    max_ejection_time: Duration,
    max_ejected_percent: u8,
}

impl Default for OutlierConfigBuilder {
    /// 5 consecutive failures or ≥ 50 % of ≥ 20 calls in 10 s; 30 s base
    /// ejection, 5 min cap; at most 10 % ejected (at least one).
    fn default() -> Self {
        OutlierConfigBuilder {
            consecutive_failures: Some(5),
            failure_rate: Some(FailureRate::default()),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 10,
        }
    }
}

impl OutlierConfigBuilder {
    /// Ejects after `n` failures in a row (≥ 1).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Turns the consecutive-failures detector off.
    pub fn without_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Sets the failure-rate detector.
    pub fn failure_rate(mut self, rate: FailureRate) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Turns the failure-rate detector off.
    pub fn without_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// The ejection time of a first ejection; the `n`-th lasts `n` times
    /// as long.
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        self.base_ejection_time = d;
        self
    }

    /// The longest ejection.
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        self.max_ejection_time = d;
        self
    }

    /// At most this percentage of endpoints ejected at once (one may always
    /// be, unless it is the only endpoint).
    pub fn max_ejected_percent(mut self, percent: u8) -> Self {
        self.max_ejected_percent = percent;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<OutlierConfig, OutlierConfigError> {
        if self.consecutive_failures == Some(0) {
            return Err(OutlierConfigError::ZeroConsecutive);
        }
        if let Some(r) = &self.failure_rate {
            if !(r.threshold > 0.0 && r.threshold <= 1.0) {
                return Err(OutlierConfigError::Threshold(r.threshold));
            }
            if r.window.is_zero() {
                return Err(OutlierConfigError::ZeroWindow);
            }
        }
        if self.base_ejection_time.is_zero() {
            return Err(OutlierConfigError::ZeroEjection);
        }
        if self.max_ejection_time < self.base_ejection_time {
            return Err(OutlierConfigError::MaxBelowBase {
                base: self.base_ejection_time,
                max: self.max_ejection_time,
            });
        }
        if self.max_ejected_percent > 100 {
            return Err(OutlierConfigError::Percent(self.max_ejected_percent));
        }
        Ok(OutlierConfig { b: self })
    }
}

impl TryFrom<OutlierConfigBuilder> for OutlierConfig {
    type Error = OutlierConfigError;
    fn try_from(b: OutlierConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<OutlierConfig> for OutlierConfigBuilder {
    fn from(c: OutlierConfig) -> Self {
        c.b
    }
}

/// Why an [`OutlierConfigBuilder`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OutlierConfigError {
    /// `consecutive_failures` was 0.
    #[error("outlier consecutive_failures must be at least 1")]
    ZeroConsecutive,
    /// The failure-rate threshold was not in (0, 1].
    #[error("outlier failure_rate.threshold must be in (0.0, 1.0], got {0}")]
    Threshold(f64),
    /// The failure-rate window was zero.
    #[error("outlier failure_rate.window must be greater than zero")]
    ZeroWindow,
    /// The base ejection time was zero.
    #[error("outlier base_ejection_time must be greater than zero")]
    ZeroEjection,
    /// The cap was below the base ejection time.
    #[error("outlier max_ejection_time ({max:?}) is below base_ejection_time ({base:?})")]
    MaxBelowBase {
        /// The base.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// `max_ejected_percent` was above 100.
    #[error("outlier max_ejected_percent must be at most 100, got {0}")]
    Percent(u8),
}
