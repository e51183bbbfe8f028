//! Limiter settings from configuration files.

use super::{Clock, KeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hash;
use std::str::FromStr;
use std::time::Duration;

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

/// A `per_key` entry whose key does not parse as the limiter's key type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit per_key entry {0:?} is not a valid key")]
pub struct InvalidKey(pub String);

/// Settings of a [`RateLimiter`] or [`KeyedRateLimiter`], as they appear in a
/// configuration file.
///
/// ```
/// use msp_resilience::rate_limit::{KeyedRateLimiter, RateLimitConfig};
/// use std::net::IpAddr;
///
/// let c: RateLimitConfig = serde_json::from_str(r#"{
///     "quota": "100/min",
///     "per_key": {"10.0.0.7": "1000/min burst 50"},
///     "idle_grace": "30s",
///     "clock": "fast"
/// }"#)?;
/// let limiter: KeyedRateLimiter<IpAddr> = c.keyed()?;
/// assert!(limiter.check(&"10.0.0.7".parse()?).is_ok());
///
/// // Typos are errors, not silently ignored settings.
/// assert!(serde_json::from_str::<RateLimitConfig>(r#"{"quota": "1/s", "burts": 2}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The quota (of every key, for a keyed limiter).
    pub quota: Quota,
    /// Keys with a quota of their own (keyed limiters only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_key: BTreeMap<String, Quota>,
    /// How long a key stays idle before the automatic sweep drops it
    /// (default 10 s).
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub idle_grace: Duration,
    /// The clock (default `tokio`).
    #[serde(default)]
    pub clock: Clock,
}

impl RateLimitConfig {
    /// Settings with `quota` and the defaults.
    pub fn new(quota: Quota) -> Self {
        RateLimitConfig {
            quota,
            per_key: BTreeMap::new(),
            idle_grace: default_grace(),
            clock: Clock::default(),
        }
    }

    /// One limit for all requests (`per_key` does not apply).
    pub fn direct(&self) -> RateLimiter {
        RateLimiter::with_clock(self.quota, self.clock)
    }

    /// A limit per key; the `per_key` keys are parsed as `K`.
    pub fn keyed<K>(&self) -> Result<KeyedRateLimiter<K>, InvalidKey>
    where
        K: FromStr + Hash + Eq + Clone,
    {
        let mut b = KeyedRateLimiter::builder(self.quota)
            .idle_grace(self.idle_grace)
            .clock(self.clock);
        for (key, quota) in &self.per_key {
            let k = key.parse::<K>().map_err(|_| InvalidKey(key.clone()))?;
            b = b.quota_for(k, *quota);
        }
        Ok(b.build())
    }
}
