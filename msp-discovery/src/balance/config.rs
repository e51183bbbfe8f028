//! Balancing settings: [`BalanceConfig`], built and checked by
//! [`BalanceConfigBuilder`].

use crate::outlier::OutlierConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How an [`EndpointSet`](super::EndpointSet) chooses among available
/// endpoints.
///
/// Deserializes from `round_robin`, `random`, `weighted`,
/// `{p2c: {decay: 10s, default_rtt: 10ms}}` or
/// `{consistent_hash: {vnodes: 128}}` (fields optional). Checked by
/// [`BalanceConfigBuilder::build`] (a zero decay or zero vnodes is
/// rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Strategy {
    /// [`RoundRobin`](super::RoundRobin).
    RoundRobin,
    /// [`Random`](super::Random).
    Random,
    /// [`Weighted`](super::Weighted) by instance weight.
    Weighted,
    /// [`P2c`](super::P2c) over peak-EWMA latency.
    P2c {
        /// Peak-EWMA decay window (> 0).
        #[serde(default = "default_decay", with = "humantime_serde")]
        decay: Duration,
        /// RTT assumed for an endpoint before its first response.
        #[serde(default = "default_rtt", with = "humantime_serde")]
        default_rtt: Duration,
    },
    /// [`ConsistentHash`](super::ConsistentHash) by request key.
    ConsistentHash {
        /// Ring points per unit of instance weight (≥ 1).
        #[serde(default = "default_vnodes")]
        vnodes: u32,
    },
}

pub(super) fn default_decay() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_rtt() -> Duration {
    Duration::from_millis(10)
}
fn default_vnodes() -> u32 {
    128
}

impl Strategy {
    /// Power of two choices with a 10 s decay and a 10 ms initial RTT.
    pub fn p2c() -> Self {
        Strategy::P2c {
            decay: default_decay(),
            default_rtt: default_rtt(),
        }
    }

    /// Consistent hashing with 128 virtual nodes per unit of weight.
    pub fn consistent_hash() -> Self {
        Strategy::ConsistentHash {
            vnodes: default_vnodes(),
        }
    }
}

impl Default for Strategy {
    /// [`Strategy::p2c`].
    fn default() -> Self {
        Strategy::p2c()
    }
}

/// Prefer endpoints in one zone, fall back to all zones.
///
/// The local zone is used while it has at least one available endpoint and
/// at least `min_available` (a fraction, default 0) of its endpoints are
/// available; otherwise picks spread over every zone. Deserializes from
/// `{zone: eu-1a, min_available: 0.5}`; checked by
/// [`BalanceConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePreference {
    pub(super) zone: String,
    #[serde(default)]
    pub(super) min_available: f64,
}

impl ZonePreference {
    /// Prefers `zone` (not empty), while at least one endpoint there is
    /// available.
    pub fn new(zone: impl Into<String>) -> Self {
        ZonePreference {
            zone: zone.into(),
            min_available: 0.0,
        }
    }

    /// Also requires this fraction (0.0–1.0) of the zone's endpoints to be
    /// available before preferring it.
    #[must_use]
    pub fn min_available(mut self, fraction: f64) -> Self {
        self.min_available = fraction;
        self
    }

    /// The preferred zone.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The fraction of the zone's endpoints that must be available.
    pub fn min_available_fraction(&self) -> f64 {
        self.min_available
    }
}

/// Validated balancing settings of an [`EndpointSet`](super::EndpointSet)
/// (and of each service of a [`DiscoveryClient`](crate::DiscoveryClient)).
///
/// Build with [`BalanceConfig::builder`] or deserialize (durations as
/// `"10s"`); either way the values are checked, so a `BalanceConfig` is
/// always valid. [`BalanceConfig::default`] is p2c over peak EWMA with
/// outlier detection.
///
/// ```
/// use msp_discovery::balance::{BalanceConfig, Strategy};
///
/// let config: BalanceConfig = serde_saphyr::from_str(
///     "
/// strategy: round_robin
/// zone: {zone: eu-1a, min_available: 0.5}
/// panic_threshold: 0.3
/// outlier: {consecutive_failures: 3, base_ejection_time: 10s}
/// ",
/// )?;
/// assert_eq!(config.strategy(), &Strategy::RoundRobin);
/// assert_eq!(config.outlier().and_then(|o| o.consecutive_failures()), Some(3));
///
/// // Invalid values and unknown fields are errors, not silently ignored.
/// assert!(serde_saphyr::from_str::<BalanceConfig>("panic_threshold: 1.5").is_err());
/// assert!(serde_saphyr::from_str::<BalanceConfig>("stratgy: random").is_err());
///
/// // The same from code.
/// let same = BalanceConfig::builder()
///     .strategy(Strategy::RoundRobin)
///     .panic_threshold(1.5)
///     .build();
/// assert!(same.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "BalanceConfigBuilder", into = "BalanceConfigBuilder")]
pub struct BalanceConfig {
    b: BalanceConfigBuilder,
}

impl BalanceConfig {
    /// Starts from the defaults listed on [`BalanceConfigBuilder`].
    pub fn builder() -> BalanceConfigBuilder {
        BalanceConfigBuilder::default()
    }

    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.b.strategy
    }

    /// The zone preference, if any.
    pub fn zone_preference(&self) -> Option<&ZonePreference> {
        self.b.zone.as_ref()
    }

    /// The fraction of available endpoints below which the set balances
    /// over all of them (panic mode).
    pub fn panic_threshold(&self) -> f64 {
        self.b.panic_threshold
    }

    /// The seed of the random draws, if fixed.
    pub fn seed(&self) -> Option<u64> {
        self.b.seed
    }

    /// The outlier detection settings, if enabled.
    pub fn outlier(&self) -> Option<&OutlierConfig> {
        self.b.outlier.as_ref()
    }
}

/// Builder and serde form of [`BalanceConfig`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `strategy` | `{p2c: {decay: 10s, default_rtt: 10ms}}` | see [`Strategy`] |
/// | `zone` | none | a [`ZonePreference`] |
/// | `panic_threshold` | 0.0 | balance over all endpoints when fewer than this fraction are available (0: only when none is) |
/// | `seed` | none (random) | seeds random draws, for reproducible tests |
/// | `outlier` | [`OutlierConfig::default`] | passive outlier detection; `null` turns it off |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct BalanceConfigBuilder {
    strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<ZonePreference>,
    panic_threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    outlier: Option<OutlierConfig>,
}

impl Default for BalanceConfigBuilder {
    fn default() -> Self {
        BalanceConfigBuilder {
            strategy: Strategy::default(),
            zone: None,
            panic_threshold: 0.0,
            seed: None,
            outlier: Some(OutlierConfig::default()),
        }
    }
}

impl BalanceConfigBuilder {
    /// Sets the strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Prefers one zone.
    pub fn zone_preference(mut self, zone: ZonePreference) -> Self {
        self.zone = Some(zone);
        self
    }

    /// Balances over all endpoints when fewer than this fraction (0.0–1.0)
    /// are available. 0 (the default) means only when none is.
    pub fn panic_threshold(mut self, fraction: f64) -> Self {
        self.panic_threshold = fraction;
        self
    }

    /// Seeds the random draws (random, weighted, p2c, keyless consistent
    /// hash) for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets passive outlier detection.
    pub fn outlier_detection(mut self, config: OutlierConfig) -> Self {
        self.outlier = Some(config);
        self
    }

    /// Turns passive outlier detection off.
    pub fn without_outlier_detection(mut self) -> Self {
        self.outlier = None;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<BalanceConfig, BalanceConfigError> {
        let fraction = |name: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(BalanceConfigError::Fraction { name, value: v })
            }
        };
        fraction("panic_threshold", self.panic_threshold)?;
        if let Some(z) = &self.zone {
            fraction("zone.min_available", z.min_available)?;
            if z.zone.is_empty() {
                return Err(BalanceConfigError::EmptyZone);
            }
        }
        match &self.strategy {
            Strategy::P2c { decay, .. } if decay.is_zero() => {
                return Err(BalanceConfigError::ZeroDecay);
            }
            Strategy::ConsistentHash { vnodes: 0 } => {
                return Err(BalanceConfigError::ZeroVnodes);
            }
            _ => {}
        }
        Ok(BalanceConfig { b: self })
    }
}

impl TryFrom<BalanceConfigBuilder> for BalanceConfig {
    type Error = BalanceConfigError;
    fn try_from(b: BalanceConfigBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<BalanceConfig> for BalanceConfigBuilder {
    fn from(c: BalanceConfig) -> Self {
        c.b
    }
}

/// Why a [`BalanceConfigBuilder`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BalanceConfigError {
    /// A fraction was outside 0.0–1.0.
    #[error("{name} must be a fraction between 0.0 and 1.0, got {value}")]
    Fraction {
        /// The setting.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// The preferred zone name was empty.
    #[error("the preferred zone name is empty")]
    EmptyZone,
    /// The p2c decay window was zero.
    #[error("p2c decay must be greater than zero")]
    ZeroDecay,
    /// Consistent hashing with zero virtual nodes.
    #[error("consistent_hash vnodes must be at least 1")]
    ZeroVnodes,
}
