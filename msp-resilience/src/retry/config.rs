//! Retry settings.

use super::budget::{BudgetConfig, BudgetConfigError};
use super::policy::{DEFAULT_MAX_REPLAY_BODY, DEFAULT_MAX_RETRY_AFTER};
use http::StatusCode;
use msp_core::backoff::Backoff;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a retry configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// `max_attempts` was zero.
    #[error("retry max_attempts must be at least 1")]
    ZeroAttempts,
    /// The budget settings were invalid.
    #[error(transparent)]
    Budget(#[from] BudgetConfigError),
    /// A status code was outside 100..=999.
    #[error("invalid HTTP status code {0}")]
    Status(u16),
}

/// Validated settings of an HTTP [`RetryLayer`](super::RetryLayer)
/// ([`RetryLayer::from_config`](super::RetryLayer::from_config)). Build
/// with [`RetryConfig::builder`] or deserialize (durations as `"500ms"`).
///
/// ```
/// use msp_core::backoff::Backoff;
/// use msp_resilience::retry::{BudgetConfig, RetryConfig, RetryLayer};
/// use std::time::Duration;
///
/// let from_file: RetryConfig = serde_json::from_str(r#"{
///     "max_attempts": 4,
///     "backoff": { "initial": "50ms", "max_delay": "1s" },
///     "budget": { "percent": 10.0, "min_per_second": 5, "ttl": "10s" },
///     "per_try_timeout": "500ms",
///     "never_retry_statuses": [501, 505]
/// }"#)?;
/// let from_code = RetryConfig::builder()
///     .max_attempts(4)
///     .backoff(Backoff::builder().initial(Duration::from_millis(50)).max_delay(Duration::from_secs(1)).build()?)
///     .budget(Some(BudgetConfig { percent: 10.0, min_per_second: 5, ttl: Duration::from_secs(10) }))
///     .per_try_timeout(Duration::from_millis(500))
///     .never_retry_statuses([501, 505])
///     .build()?;
/// assert_eq!(from_file, from_code);
/// let layer = RetryLayer::from_config(&from_file);
/// # drop(layer);
///
/// // Unknown fields are errors, not silently ignored; so are invalid values.
/// assert!(serde_json::from_str::<RetryConfig>(r#"{"max_atempts": 3}"#).is_err());
/// assert!(serde_json::from_str::<RetryConfig>(r#"{"max_attempts": 0}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RetryConfigBuilder", into = "RetryConfigBuilder")]
pub struct RetryConfig {
    b: RetryConfigBuilder,
    retry: Vec<StatusCode>,
    never: Vec<StatusCode>,
}

impl RetryConfig {
    /// Starts from the defaults listed on [`RetryConfigBuilder`].
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder::default()
    }

    /// Attempts per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.b.max_attempts
    }

    /// Delays between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.b.backoff
    }

    /// The retry budget (`None`: no budget).
    pub fn budget(&self) -> Option<BudgetConfig> {
        self.b.budget
    }

    /// Timeout of each attempt.
    pub fn per_try_timeout(&self) -> Option<Duration> {
        self.b.per_try_timeout
    }

    /// Whether non-idempotent methods are retried too.
    pub fn retry_non_idempotent(&self) -> bool {
        self.b.retry_non_idempotent
    }

    /// Largest replayed request body in bytes.
    pub fn max_replay_body(&self) -> usize {
        self.b.max_replay_body
    }

    /// Longest `Retry-After` honoured.
    pub fn max_retry_after(&self) -> Duration {
        self.b.max_retry_after
    }

    /// Extra statuses to retry.
    pub fn retry_statuses(&self) -> &[StatusCode] {
        &self.retry
    }

    /// Statuses never retried.
    pub fn never_retry_statuses(&self) -> &[StatusCode] {
        &self.never
    }

    /// Whether a refused retry returns `BudgetExhausted` instead of the
    /// last result.
    pub fn budget_exhausted_error(&self) -> bool {
        self.b.budget_exhausted_error
    }
}

/// Builder and serde form of [`RetryConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_attempts` | 3 | attempts per request, the first included (≥ 1) |
/// | `backoff` | 100 ms doubling to 10 s, full jitter | delays between attempts |
/// | `budget` | `{percent: 20, min_per_second: 10, ttl: 10s}` | retry budget; `null` for none |
/// | `per_try_timeout` | none | timeout of each attempt |
/// | `retry_non_idempotent` | `false` | retry `POST`, `PATCH`… too |
/// | `max_replay_body` | 65536 | largest replayed request body, bytes |
/// | `max_retry_after` | `30s` | longest `Retry-After` honoured |
/// | `retry_statuses` | `[]` | extra statuses to retry (`429` is by default) |
/// | `never_retry_statuses` | `[]` | statuses never retried (`501` by default) |
/// | `budget_exhausted_error` | `false` | fail with `BudgetExhausted` when the budget refuses |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct RetryConfigBuilder {
    max_attempts: u32,
    backoff: Backoff,
    budget: Option<BudgetConfig>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    per_try_timeout: Option<Duration>,
    retry_non_idempotent: bool,
    max_replay_body: usize,
    #[serde(with = "humantime_serde")]
    max_retry_after: Duration,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retry_statuses: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    never_retry_statuses: Vec<u16>,
    budget_exhausted_error: bool,
}

impl Default for RetryConfigBuilder {
    fn default() -> Self {
        RetryConfigBuilder {
            max_attempts: 3,
            backoff: Backoff::default(),
            budget: Some(BudgetConfig::default()),
            per_try_timeout: None,
            retry_non_idempotent: false,
            max_replay_body: DEFAULT_MAX_REPLAY_BODY,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            retry_statuses: Vec::new(),
            never_retry_statuses: Vec::new(),
            budget_exhausted_error: false,
        }
    }
}

impl RetryConfigBuilder {
    /// Attempts per request, the first included (≥ 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Delays between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The retry budget; `None` for none.
    pub fn budget(mut self, budget: Option<BudgetConfig>) -> Self {
        self.budget = budget;
        self
    }

    /// Timeout of each attempt.
    pub fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.per_try_timeout = Some(timeout);
        self
    }

    /// Retry non-idempotent methods too.
    pub fn retry_non_idempotent(mut self, on: bool) -> Self {
        self.retry_non_idempotent = on;
        self
    }

    /// Largest replayed request body in bytes.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// Longest `Retry-After` honoured.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Extra statuses to retry.
    pub fn retry_statuses(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.retry_statuses = codes.into_iter().collect();
        self
    }

    /// Statuses never retried.
    pub fn never_retry_statuses(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.never_retry_statuses = codes.into_iter().collect();
        self
    }

    /// Fail with `BudgetExhausted` when the budget refuses a retry.
    pub fn budget_exhausted_error(mut self, on: bool) -> Self {
        self.budget_exhausted_error = on;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<RetryConfig, RetryConfigError> {
        if self.max_attempts == 0 {
            return Err(RetryConfigError::ZeroAttempts);
        }
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        let statuses = |codes: &[u16]| {
            codes
                .iter()
                .map(|&c| StatusCode::from_u16(c).map_err(|_| RetryConfigError::Status(c)))
                .collect::<Result<Vec<_>, _>>()
        };
        let retry = statuses(&self.retry_statuses)?;
        let never = statuses(&self.never_retry_statuses)?;
        Ok(RetryConfig {
            b: self,
            retry,
            never,
        })
    }
}

impl TryFrom<RetryConfigBuilder> for RetryConfig {
    type Error = RetryConfigError;
    fn try_from(b: RetryConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<RetryConfig> for RetryConfigBuilder {
    fn from(c: RetryConfig) -> Self {
        c.b
    }
}
