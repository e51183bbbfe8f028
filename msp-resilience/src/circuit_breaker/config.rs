//! Circuit-breaker settings.

use msp_core::backoff::{Backoff, InvalidBackoff};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which calls the breaker's failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `size` recorded calls.
    Count {
        /// How many calls the window holds (≥ 1).
        size: u32,
    },
    /// The calls recorded in the last `duration`, in one-second buckets.
    Time {
        /// The window length, rounded up to whole seconds (≥ 1 s, ≤ 1 h).
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
}

impl Default for SlidingWindow {
    /// The last 100 calls.
    fn default() -> Self {
        SlidingWindow::Count { size: 100 }
    }
}

/// How the breaker treats calls, changeable at run time with
/// [`Breaker::set_mode`](super::Breaker::set_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The normal state machine: closed, open, half-open.
    #[default]
    Normal,
    /// Rejects every call until the mode changes.
    ForceOpen,
    /// Admits every call; counts them in metrics but never trips.
    ForceClosed,
    /// Admits every call and records nothing.
    Disabled,
    /// Runs the full state machine (windows, transitions, events, metrics)
    /// but never rejects a call: shows what the breaker would do.
    MetricsOnly,
}

impl Mode {
    pub(crate) fn to_bits(self) -> u64 {
        match self {
            Mode::Normal => 0,
            Mode::ForceOpen => 1,
            Mode::ForceClosed => 2,
            Mode::Disabled => 3,
            Mode::MetricsOnly => 4,
        }
    }

    pub(crate) fn from_bits(bits: u64) -> Mode {
        match bits {
            1 => Mode::ForceOpen,
            2 => Mode::ForceClosed,
            3 => Mode::Disabled,
            4 => Mode::MetricsOnly,
            _ => Mode::Normal,
        }
    }
}

/// Why a circuit-breaker configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CircuitBreakerConfigError {
    /// A count window of zero calls.
    #[error("circuit breaker count window size must be at least 1")]
    ZeroWindow,
    /// A time window shorter than a second or longer than an hour.
    #[error("circuit breaker time window must be between 1s and 1h, got {0:?}")]
    TimeWindow(Duration),
    /// A rate outside `(0, 100]`.
    #[error("circuit breaker {name} must be a percentage in (0, 100], got {value}")]
    Rate {
        /// Which setting.
        name: &'static str,
        /// The bad value.
        value: f64,
    },
    /// `minimum_calls`, `half_open_permits` or `consecutive_failures` was zero.
    #[error("circuit breaker {0} must be at least 1")]
    Zero(&'static str),
    /// The open-duration backoff was invalid.
    #[error("circuit breaker open duration: {0}")]
    OpenDuration(#[from] InvalidBackoff),
}

/// Validated circuit-breaker settings. Build with
/// [`CircuitBreakerConfig::builder`] or deserialize (durations as `"30s"`).
///
/// ```
/// use msp_resilience::circuit_breaker::CircuitBreakerConfig;
///
/// let config: CircuitBreakerConfig = serde_json::from_str(r#"{
///     "window": {"type": "count", "size": 50},
///     "minimum_calls": 10,
///     "failure_rate": 50.0,
///     "slow_call_duration": "2s",
///     "open_duration": "10s",
///     "max_open_duration": "2m"
/// }"#)?;
/// assert_eq!(config.minimum_calls(), 10);
///
/// // Unknown fields are errors, not silently ignored.
/// assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{"failure_treshold": 5}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "CircuitBreakerConfigBuilder",
    into = "CircuitBreakerConfigBuilder"
)]
pub struct CircuitBreakerConfig {
    pub(crate) b: CircuitBreakerConfigBuilder,
    pub(crate) open_backoff: Backoff,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        let b = CircuitBreakerConfigBuilder::default();
        let open_backoff = b.open_backoff().unwrap_or_default();
        CircuitBreakerConfig { b, open_backoff }
    }
}

impl CircuitBreakerConfig {
    /// Starts from the defaults listed on [`CircuitBreakerConfigBuilder`].
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder::default()
    }

    /// The breaker's name (a metrics label and part of events).
    pub fn name(&self) -> &str {
        &self.b.name
    }

    /// The sliding window.
    pub fn window(&self) -> SlidingWindow {
        self.b.window
    }

    /// Calls the window must hold before rates can trip the breaker (capped
    /// at a count window's size).
    pub fn minimum_calls(&self) -> u32 {
        match self.b.window {
            SlidingWindow::Count { size } => self.b.minimum_calls.min(size),
            SlidingWindow::Time { .. } => self.b.minimum_calls,
        }
    }

    /// The failure rate (percent) at or above which the breaker opens.
    pub fn failure_rate(&self) -> f64 {
        self.b.failure_rate
    }

    /// The slow-call rate (percent) at or above which the breaker opens.
    pub fn slow_call_rate(&self) -> f64 {
        self.b.slow_call_rate
    }

    /// Calls taking at least this long are slow (none: no call is slow).
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.b.slow_call_duration
    }

    /// Consecutive failures that open the breaker regardless of rates.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.b.consecutive_failures
    }

    /// Probe calls admitted in the half-open state.
    pub fn half_open_permits(&self) -> u32 {
        self.b.half_open_permits
    }

    /// How long the breaker may stay half-open before it opens again.
    pub fn max_wait_in_half_open(&self) -> Option<Duration> {
        self.b.max_wait_in_half_open
    }

    /// How long the breaker stays open after its `n`-th consecutive trip
    /// (0-based): `open_duration × multiplierⁿ`, capped at `max_open_duration`.
    pub fn open_duration(&self, trip: u32) -> Duration {
        self.open_backoff.exponential(trip)
    }

    /// The initial mode.
    pub fn mode(&self) -> Mode {
        self.b.mode
    }
}

/// Builder and serde form of [`CircuitBreakerConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `"default"` | metrics label, event field |
/// | `window` | `{type: count, size: 100}` | calls the rates are computed over |
/// | `minimum_calls` | 20 | calls needed before a rate can trip |
/// | `failure_rate` | 50.0 | percent of failures that opens |
/// | `slow_call_rate` | 100.0 | percent of slow calls that opens |
/// | `slow_call_duration` | none | a call this long or longer is slow |
/// | `consecutive_failures` | none | this many failures in a row open |
/// | `half_open_permits` | 5 | probe calls in the half-open state |
/// | `max_wait_in_half_open` | none | half-open longer than this re-opens |
/// | `open_duration` | `30s` | open time after the first trip |
/// | `open_duration_multiplier` | 2.0 | growth on each further trip |
/// | `max_open_duration` | `5m` | cap on the open time |
/// | `mode` | `normal` | see [`Mode`] |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct CircuitBreakerConfigBuilder {
    name: String,
    window: SlidingWindow,
    minimum_calls: u32,
    failure_rate: f64,
    slow_call_rate: f64,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    slow_call_duration: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_failures: Option<u32>,
    half_open_permits: u32,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    max_wait_in_half_open: Option<Duration>,
    #[serde(with = "humantime_serde")]
    open_duration: Duration,
    open_duration_multiplier: f64,
    #[serde(with = "humantime_serde")]
    max_open_duration: Duration,
    mode: Mode,
}

impl Default for CircuitBreakerConfigBuilder {
    fn default() -> Self {
        CircuitBreakerConfigBuilder {
            name: "default".to_owned(),
            window: SlidingWindow::default(),
            minimum_calls: 20,
            failure_rate: 50.0,
            slow_call_rate: 100.0,
            slow_call_duration: None,
            consecutive_failures: None,
            half_open_permits: 5,
            max_wait_in_half_open: None,
            open_duration: Duration::from_secs(30),
            open_duration_multiplier: 2.0,
            max_open_duration: Duration::from_secs(300),
            mode: Mode::Normal,
        }
    }
}

impl CircuitBreakerConfigBuilder {
    /// The breaker's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A count-based window of the last `size` calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.window = SlidingWindow::Count { size };
        self
    }

    /// A time-based window over the last `duration` (whole seconds).
    pub fn time_window(mut self, duration: Duration) -> Self {
        self.window = SlidingWindow::Time { duration };
        self
    }

    /// Calls needed before a rate can trip.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// Failure rate in percent, `(0, 100]`.
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.failure_rate = percent;
        self
    }

    /// Slow-call rate in percent, `(0, 100]`.
    pub fn slow_call_rate(mut self, percent: f64) -> Self {
        self.slow_call_rate = percent;
        self
    }

    /// Calls at least this long are slow.
    pub fn slow_call_duration(mut self, d: Duration) -> Self {
        self.slow_call_duration = Some(d);
        self
    }

    /// Opens after `n` failures in a row.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Probe calls admitted while half-open.
    pub fn half_open_permits(mut self, n: u32) -> Self {
        self.half_open_permits = n;
        self
    }

    /// Re-opens when half-open for longer than `d` without a verdict.
    pub fn max_wait_in_half_open(mut self, d: Duration) -> Self {
        self.max_wait_in_half_open = Some(d);
        self
    }

    /// Open time after the first trip.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// Growth of the open time on each further trip without closing in
    /// between (≥ 1.0; 1.0 keeps it fixed).
    pub fn open_duration_multiplier(mut self, m: f64) -> Self {
        self.open_duration_multiplier = m;
        self
    }

    /// Cap on the open time.
    pub fn max_open_duration(mut self, d: Duration) -> Self {
        self.max_open_duration = d;
        self
    }

    /// The initial mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    fn open_backoff(&self) -> Result<Backoff, InvalidBackoff> {
        Backoff::builder()
            .initial(self.open_duration)
            .multiplier(self.open_duration_multiplier)
            .max_delay(self.max_open_duration)
            .jitter(msp_core::backoff::Jitter::None)
            .build()
    }

    /// Validates the settings.
    pub fn build(self) -> Result<CircuitBreakerConfig, CircuitBreakerConfigError> {
        match self.window {
            SlidingWindow::Count { size: 0 } => return Err(CircuitBreakerConfigError::ZeroWindow),
            SlidingWindow::Time { duration }
                if duration < Duration::from_secs(1) || duration > Duration::from_secs(3600) =>
            {
                return Err(CircuitBreakerConfigError::TimeWindow(duration));
            }
            _ => {}
        }
        for (name, value) in [
            ("failure_rate", self.failure_rate),
            ("slow_call_rate", self.slow_call_rate),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(CircuitBreakerConfigError::Rate { name, value });
            }
        }
        if self.minimum_calls == 0 {
            return Err(CircuitBreakerConfigError::Zero("minimum_calls"));
        }
        if self.half_open_permits == 0 {
            return Err(CircuitBreakerConfigError::Zero("half_open_permits"));
        }
        if self.consecutive_failures == Some(0) {
            return Err(CircuitBreakerConfigError::Zero("consecutive_failures"));
        }
        let open_backoff = self.open_backoff()?;
        Ok(CircuitBreakerConfig {
            b: self,
            open_backoff,
        })
    }
}

impl TryFrom<CircuitBreakerConfigBuilder> for CircuitBreakerConfig {
    type Error = CircuitBreakerConfigError;
    fn try_from(b: CircuitBreakerConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<CircuitBreakerConfig> for CircuitBreakerConfigBuilder {
    fn from(c: CircuitBreakerConfig) -> Self {
        c.b
    }
}
