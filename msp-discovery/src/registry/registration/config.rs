//! Heartbeat and retry settings of a [`Registration`](super::Registration):
//! [`RegistrationConfig`], built and checked by [`RegistrationConfigBuilder`].

use crate::registry::RegistryError;
use msp_core::backoff::Backoff;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Validated settings for how a [`Registration`](super::Registration)
/// heartbeats and retries.
///
/// Build with [`RegistrationConfig::builder`] or deserialize (durations as
/// `"5s"`); either way the values are checked. What depends on the lease's
/// TTL (a heartbeat, jitter included, shorter than the TTL) is checked when
/// registering, by [`validate`](Self::validate).
///
/// ```
/// use msp_discovery::registry::RegistrationConfig;
/// use std::time::Duration;
///
/// let config: RegistrationConfig = serde_saphyr::from_str(
///     "
/// heartbeat: 3s
/// jitter: 0.1
/// retry: {initial: 200ms, max_delay: 5s}
/// ",
/// )?;
/// assert_eq!(config.heartbeat_for(Duration::from_secs(30)), Duration::from_secs(3));
/// assert!(serde_saphyr::from_str::<RegistrationConfig>("jitter: 1.5").is_err());
/// assert!(serde_saphyr::from_str::<RegistrationConfig>("heartbeats: 3s").is_err());
///
/// // Without an explicit heartbeat: a third of the TTL.
/// let config = RegistrationConfig::default();
/// assert_eq!(config.heartbeat_for(Duration::from_secs(30)), Duration::from_secs(10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(
    try_from = "RegistrationConfigBuilder",
    into = "RegistrationConfigBuilder"
)]
pub struct RegistrationConfig {
    b: RegistrationConfigBuilder,
}

impl RegistrationConfig {
    /// Starts from the defaults listed on [`RegistrationConfigBuilder`].
    pub fn builder() -> RegistrationConfigBuilder {
        RegistrationConfigBuilder::default()
    }

    /// The heartbeat period (before jitter) used for a lease of `ttl`.
    pub fn heartbeat_for(&self, ttl: Duration) -> Duration {
        self.b.heartbeat.unwrap_or(ttl / 3)
    }

    /// The jitter of each heartbeat, a fraction of the period either way.
    pub fn jitter(&self) -> f64 {
        self.b.jitter
    }

    /// The per-call timeout used for a lease of `ttl`.
    pub fn timeout_for(&self, ttl: Duration) -> Duration {
        self.b
            .timeout
            .unwrap_or_else(|| (ttl / 2).clamp(Duration::from_millis(500), Duration::from_secs(5)))
    }

    /// The backoff between attempts to register again and between renewal
    /// retries.
    pub fn retry(&self) -> &Backoff {
        &self.b.retry
    }

    /// Checks the settings against a lease of `ttl`: the TTL is positive
    /// and the longest heartbeat wait, `heartbeat × (1 + jitter)`, is
    /// shorter than it. Fails with [`RegistryError::Config`].
    pub fn validate(&self, ttl: Duration) -> Result<(), RegistryError> {
        if ttl.is_zero() {
            return Err(RegistryError::Config("the TTL must be positive".into()));
        }
        let heartbeat = self.heartbeat_for(ttl);
        if heartbeat.is_zero() || heartbeat >= ttl {
            return Err(RegistryError::Config(format!(
                "the heartbeat ({heartbeat:?}) must be positive and shorter than the TTL ({ttl:?})"
            )));
        }
        let longest = Duration::try_from_secs_f64(heartbeat.as_secs_f64() * (1.0 + self.b.jitter))
            .unwrap_or(Duration::MAX);
        if longest >= ttl {
            return Err(RegistryError::Config(format!(
                "the heartbeat with jitter (up to {longest:?}) must be shorter than the TTL ({ttl:?})"
            )));
        }
        Ok(())
    }
}

/// Builder and serde form of [`RegistrationConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `heartbeat` | `ttl / 3` | the renewal period before jitter (> 0) |
/// | `jitter` | 0.2 | each wait is drawn uniformly in `heartbeat × (1 ± jitter)` ([`msp_core::backoff::jitter`]); in `[0, 1)` |
/// | `timeout` | `ttl / 2`, between 500 ms and 5 s | the limit on each backend call (> 0) |
/// | `retry` | 100 ms doubling to 5 s, full jitter | backoff between attempts to register again and renewal retries |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct RegistrationConfigBuilder {
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    heartbeat: Option<Duration>,
    jitter: f64,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    timeout: Option<Duration>,
    retry: Backoff,
}

impl Default for RegistrationConfigBuilder {
    /// Heartbeat every `ttl / 3` ± 20 %; per-call timeout `ttl / 2`
    /// (between 500 ms and 5 s); retries from 100 ms doubling to 5 s with
    /// full jitter, forever.
    fn default() -> Self {
        RegistrationConfigBuilder {
            heartbeat: None,
            jitter: 0.2,
            timeout: None,
            retry: Backoff::builder()
                .initial(Duration::from_millis(100))
                .max_delay(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl RegistrationConfigBuilder {
    /// The heartbeat period before jitter (default `ttl / 3`); must be
    /// positive, and shorter than the TTL (checked when registering).
    pub fn heartbeat(mut self, period: Duration) -> Self {
        self.heartbeat = Some(period);
        self
    }

    /// The jitter of each heartbeat, as a fraction (0 to less than 1) of
    /// the period either way, drawn uniformly ([`msp_core::backoff::jitter`],
    /// msp's one meaning of jitter): 0.2 waits between 80 % and 120 % of
    /// the period. The longest wait, `period × (1 + fraction)`, must be
    /// shorter than the TTL.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// The limit on each backend call (acquire, renew, release).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The backoff between attempts to register again after a lost lease,
    /// and between renewal retries (capped at the heartbeat period).
    /// Attempt and elapsed limits are ignored: a registration never gives up.
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.retry = backoff;
        self
    }

    /// Checks every value that does not depend on the TTL.
    pub fn build(self) -> Result<RegistrationConfig, RegistrationConfigError> {
        if self.heartbeat.is_some_and(|h| h.is_zero()) {
            return Err(RegistrationConfigError::Zero("heartbeat"));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(RegistrationConfigError::Jitter(self.jitter));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(RegistrationConfigError::Zero("timeout"));
        }
        Ok(RegistrationConfig { b: self })
    }
}

impl TryFrom<RegistrationConfigBuilder> for RegistrationConfig {
    type Error = RegistrationConfigError;
    fn try_from(b: RegistrationConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<RegistrationConfig> for RegistrationConfigBuilder {
    fn from(c: RegistrationConfig) -> Self {
        c.b
    }
}

/// Why a [`RegistrationConfigBuilder`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationConfigError {
    /// `heartbeat` or `timeout` was zero.
    #[error("registration {0} must be greater than zero")]
    Zero(&'static str),
    /// The jitter was not in `[0, 1)`.
    #[error("registration heartbeat jitter must be in [0, 1), got {0}")]
    Jitter(f64),
}
