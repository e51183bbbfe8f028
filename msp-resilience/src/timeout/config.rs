//! Timeout settings.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a timeout configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutConfigError {
    /// A zero timeout, which would fail every call.
    #[error("timeout must be longer than zero")]
    Zero,
}

/// Validated settings of a [`TimeoutLayer`](super::TimeoutLayer). Build
/// with [`TimeoutConfig::builder`] or deserialize (durations as `"2s"`).
///
/// ```
/// use msp_resilience::timeout::{TimeoutConfig, TimeoutLayer};
/// use std::time::Duration;
///
/// let from_file: TimeoutConfig = serde_json::from_str(r#"{"timeout": "250ms", "propagate": false}"#)?;
/// let from_code = TimeoutConfig::builder(Duration::from_millis(250)).propagate(false).build()?;
/// assert_eq!(from_file, from_code);
/// assert_eq!(TimeoutLayer::from_config(&from_file).timeout(), Duration::from_millis(250));
///
/// // Unknown fields are errors, not silently ignored; so is a zero timeout.
/// assert!(serde_json::from_str::<TimeoutConfig>(r#"{"timeout": "1s", "propagte": false}"#).is_err());
/// assert!(serde_json::from_str::<TimeoutConfig>(r#"{"timeout": "0s"}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TimeoutConfigBuilder", into = "TimeoutConfigBuilder")]
pub struct TimeoutConfig {
    b: TimeoutConfigBuilder,
}

impl TimeoutConfig {
    /// Starts from `timeout` and the defaults listed on
    /// [`TimeoutConfigBuilder`].
    pub fn builder(timeout: Duration) -> TimeoutConfigBuilder {
        TimeoutConfigBuilder {
            timeout,
            propagate: true,
            read_headers: true,
        }
    }

    /// The time a call may take.
    pub fn timeout(&self) -> Duration {
        self.b.timeout
    }

    /// Whether the effective deadline is written into the request.
    pub fn propagate(&self) -> bool {
        self.b.propagate
    }

    /// Whether a deadline header of the incoming request may shorten the
    /// deadline.
    pub fn read_headers(&self) -> bool {
        self.b.read_headers
    }
}

/// Builder and serde form of [`TimeoutConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `timeout` | required | the time a call may take (`"2s"`, `"250ms"`), above zero |
/// | `propagate` | `true` | write the effective deadline into the request (extension and headers) |
/// | `read_headers` | `true` | let an incoming `x-msp-deadline-ms` / `grpc-timeout` shorten the deadline |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[must_use]
pub struct TimeoutConfigBuilder {
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "yes")]
    propagate: bool,
    #[serde(default = "yes")]
    read_headers: bool,
}

fn yes() -> bool {
    true
}

impl TimeoutConfigBuilder {
    /// The time a call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to write the effective deadline into the request.
    pub fn propagate(mut self, on: bool) -> Self {
        self.propagate = on;
        self
    }

    /// Whether an incoming deadline header may shorten the deadline.
    pub fn read_headers(mut self, on: bool) -> Self {
        self.read_headers = on;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<TimeoutConfig, TimeoutConfigError> {
        if self.timeout.is_zero() {
            return Err(TimeoutConfigError::Zero);
        }
        Ok(TimeoutConfig { b: self })
    }
}

impl TryFrom<TimeoutConfigBuilder> for TimeoutConfig {
    type Error = TimeoutConfigError;
    fn try_from(b: TimeoutConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<TimeoutConfig> for TimeoutConfigBuilder {
    fn from(c: TimeoutConfig) -> Self {
        c.b
    }
}
