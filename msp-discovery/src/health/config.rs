//! Active health-check settings as users write them in a file:
//! [`HealthCheckConfig`], built and checked by [`HealthCheckConfigBuilder`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Validated settings of an HTTP or TCP [`HealthCheck`](super::HealthCheck),
/// for configuration files (a custom check is code:
/// [`HealthCheck::custom`](super::HealthCheck::custom)).
///
/// Build with [`HealthCheckConfig::builder`] or deserialize (durations as
/// `"5s"`); either way the values are checked. Turn it into a check with
/// [`HealthCheck::from_config`](super::HealthCheck::from_config).
///
/// ```
/// use msp_discovery::health::{HealthCheck, HealthCheckConfig};
/// use std::time::Duration;
///
/// let config: HealthCheckConfig = serde_saphyr::from_str(
///     "
/// path: /health/ready   # GET, healthy on 2xx; without `path`: a TCP connect
/// interval: 5s
/// timeout: 500ms
/// jitter: 0.1
/// unhealthy_threshold: 3
/// ",
/// )?;
/// assert_eq!(config.path(), Some("/health/ready"));
/// assert_eq!(config.interval(), Duration::from_secs(5));
/// let _check = HealthCheck::from_config(&config);
///
/// // Invalid values and unknown fields are errors.
/// assert!(serde_saphyr::from_str::<HealthCheckConfig>("interval: 0s").is_err());
/// assert!(serde_saphyr::from_str::<HealthCheckConfig>("path: health").is_err());
/// assert!(serde_saphyr::from_str::<HealthCheckConfig>("intervall: 5s").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(
    try_from = "HealthCheckConfigBuilder",
    into = "HealthCheckConfigBuilder"
)]
pub struct HealthCheckConfig {
    b: HealthCheckConfigBuilder,
}

impl HealthCheckConfig {
    /// Starts from the defaults listed on [`HealthCheckConfigBuilder`].
    pub fn builder() -> HealthCheckConfigBuilder {
        HealthCheckConfigBuilder::default()
    }

    /// The HTTP path checked, or `None` for a TCP connect check.
    pub fn path(&self) -> Option<&str> {
        self.b.path.as_deref()
    }

    /// Time between checks of one endpoint, before jitter.
    pub fn interval(&self) -> Duration {
        self.b.interval
    }

    /// Time one check may take.
    pub fn timeout(&self) -> Duration {
        self.b.timeout
    }

    /// The jitter of each interval, a fraction either way.
    pub fn jitter(&self) -> f64 {
        self.b.jitter
    }

    /// Passing checks in a row that make an unhealthy endpoint healthy.
    pub fn healthy_threshold(&self) -> u32 {
        self.b.healthy_threshold
    }

    /// Failing checks in a row that make a healthy endpoint unhealthy.
    pub fn unhealthy_threshold(&self) -> u32 {
        self.b.unhealthy_threshold
    }
}

/// Builder and serde form of [`HealthCheckConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `path` | none (TCP connect) | `GET` this path (starting with `/`), healthy on a `2xx` |
/// | `interval` | `10s` | time between checks of one endpoint (> 0) |
/// | `timeout` | `1s` | time one check may take (> 0) |
/// | `jitter` | 0.1 | each interval is drawn uniformly in `interval × (1 ± jitter)` ([`msp_core::backoff::jitter`]); 0.0–1.0 |
/// | `healthy_threshold` | 2 | passes in a row that bring an endpoint back (≥ 1) |
/// | `unhealthy_threshold` | 2 | failures in a row that take an endpoint out (≥ 1) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct HealthCheckConfigBuilder {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(with = "humantime_serde")]
    interval: Duration,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    jitter: f64,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl Default for HealthCheckConfigBuilder {
    fn default() -> Self {
        HealthCheckConfigBuilder {
            path: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

impl HealthCheckConfigBuilder {
    /// Checks with `GET path`, healthy on a `2xx`.
    pub fn http(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Checks with a TCP connect (the default).
    pub fn tcp(mut self) -> Self {
        self.path = None;
        self
    }

    /// Time between checks of one endpoint.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Time one check may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Randomises each interval by up to this fraction either way
    /// (0.0–1.0).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Passes in a row that bring an unhealthy endpoint back.
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n;
        self
    }

    /// Failures in a row that take a healthy endpoint out.
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<HealthCheckConfig, HealthCheckConfigError> {
        if let Some(path) = &self.path
            && (!path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err())
        {
            return Err(HealthCheckConfigError::Path(path.clone()));
        }
        if self.interval.is_zero() {
            return Err(HealthCheckConfigError::Zero("interval"));
        }
        if self.timeout.is_zero() {
            return Err(HealthCheckConfigError::Zero("timeout"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(HealthCheckConfigError::Jitter(self.jitter));
        }
        if self.healthy_threshold == 0 {
            return Err(HealthCheckConfigError::Zero("healthy_threshold"));
        }
        if self.unhealthy_threshold == 0 {
            return Err(HealthCheckConfigError::Zero("unhealthy_threshold"));
        }
        Ok(HealthCheckConfig { b: self })
    }
}

impl TryFrom<HealthCheckConfigBuilder> for HealthCheckConfig {
    type Error = HealthCheckConfigError;
    fn try_from(b: HealthCheckConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<HealthCheckConfig> for HealthCheckConfigBuilder {
    fn from(c: HealthCheckConfig) -> Self {
        c.b
    }
}

/// Why a [`HealthCheckConfigBuilder`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthCheckConfigError {
    /// The path does not start with `/` or is not a valid URI path.
    #[error("health check path must be a URI path starting with '/', got {0:?}")]
    Path(String),
    /// A duration or threshold was zero.
    #[error("health check {0} must be greater than zero")]
    Zero(&'static str),
    /// The jitter was not in 0.0–1.0.
    #[error("health check jitter must be between 0.0 and 1.0, got {0}")]
    Jitter(f64),
}
