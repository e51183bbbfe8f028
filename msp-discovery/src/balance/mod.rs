//! Load balancing: pick one endpoint of a service for each call.
//!
//! An [`EndpointSet`] holds the live instances of one service with their
//! health, ejection and load state, and picks with the configured
//! [`Strategy`]:
//!
//! | strategy | pick cost | what it does |
//! |---|---|---|
//! | [`RoundRobin`] | O(1), one atomic add | endpoint `i mod n` |
//! | [`Random`] | O(1) | uniform |
//! | [`Weighted`] | O(1), Vose alias table | by [`Instance::weight`](msp_core::Instance::weight) |
//! | [`P2c`] | O(1) | power of two choices over peak-EWMA latency × in-flight |
//! | [`ConsistentHash`] | O(log n), binary search | ring with virtual nodes, by request key |
//!
//! A [`ZonePreference`] keeps traffic in the local zone while enough of it is
//! available and falls back to every zone otherwise (Spring Cloud
//! LoadBalancer's zone preference).
//!
//! **Which endpoints are picked.** Endpoints that failed active health
//! checks ([`health`](crate::health)) or were ejected by passive outlier
//! detection ([`outlier`](crate::outlier)) are left out. If that would leave
//! nothing — or fewer than the configured
//! [`panic_threshold`](BalanceConfig::panic_threshold) fraction — the set
//! enters *panic mode* and balances over **all** endpoints, as Envoy's panic
//! threshold and Spring's health-checked supplier do: when every check
//! fails, the checks are more likely wrong than every instance, and sending
//! traffic beats failing every call locally. Panic mode is logged and
//! exported as the `msp_discovery_panic_mode` gauge.
//!
//! The balancer for the current membership and health is built once per
//! change (O(n), O(n·vnodes·log) for the hash ring) and swapped in
//! atomically, so a pick never takes a lock.
//!
//! # Example
//!
//! ```
//! use msp_core::{Instance, ServiceName};
//! use msp_core::classify::Outcome;
//! use msp_discovery::balance::{BalanceConfig, EndpointSet, Strategy, ZonePreference};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceName::new("order-service")?;
//! let set = EndpointSet::new(
//!     svc.clone(),
//!     BalanceConfig::new(Strategy::RoundRobin)
//!         .zone_preference(ZonePreference::new("zone-a"))
//!         .seed(7),
//! )?;
//! set.update([
//!     Instance::builder(svc.clone(), "10.0.0.1:80".parse()?).zone("zone-a").build()?,
//!     Instance::builder(svc.clone(), "10.0.0.2:80".parse()?).zone("zone-b").build()?,
//! ]);
//!
//! // Local zone first.
//! let ep = set.pick(None).expect("an endpoint");
//! assert_eq!(ep.instance().zone(), Some("zone-a"));
//!
//! // Report how the call went: feeds peak-EWMA latency and outlier ejection.
//! let call = ep.start();
//! set.record(call, Outcome::Success);
//!
//! // The local instance fails its health check: fall back to zone-b.
//! set.set_health(&ep, false);
//! assert_eq!(set.pick(None).unwrap().instance().zone(), Some("zone-b"));
//! # Ok(())
//! # }
//! ```

mod endpoint;
mod hash;
mod p2c;
mod random;
pub(crate) mod rng;
mod round_robin;
mod set;

pub use self::endpoint::{Call, Endpoint};
pub use self::hash::ConsistentHash;
pub use self::p2c::P2c;
pub use self::random::{Random, Weighted};
pub use self::round_robin::RoundRobin;
pub use self::set::{EndpointSet, Snapshot};

use crate::outlier::{InvalidOutlierConfig, OutlierConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Picks one endpoint.
///
/// Implemented by every strategy (each built over a fixed list of
/// endpoints) and by [`EndpointSet`], which rebuilds its strategy when
/// membership or health change. `key` is the request key for
/// [`ConsistentHash`]; the other strategies ignore it. `None` means there is
/// nothing to pick from.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// Picks an endpoint.
    fn pick(&self, key: Option<&[u8]>) -> Option<Endpoint>;
}

/// How an [`EndpointSet`] chooses among available endpoints.
///
/// Deserializes from `round_robin`, `random`, `weighted`,
/// `{p2c: {decay: 10s, default_rtt: 10ms}}` or
/// `{consistent_hash: {vnodes: 128}}` (fields optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Strategy {
    /// [`RoundRobin`].
    RoundRobin,
    /// [`Random`].
    Random,
    /// [`Weighted`] by instance weight.
    Weighted,
    /// [`P2c`] over peak-EWMA latency.
    P2c {
        /// Peak-EWMA decay window.
        #[serde(default = "default_decay", with = "humantime_serde")]
        decay: Duration,
        /// RTT assumed for an endpoint before its first response.
        #[serde(default = "default_rtt", with = "humantime_serde")]
        default_rtt: Duration,
    },
    /// [`ConsistentHash`] by request key.
    ConsistentHash {
        /// Ring points per unit of instance weight.
        #[serde(default = "default_vnodes")]
        vnodes: u32,
    },
}

fn default_decay() -> Duration {
    Duration::from_secs(10)
}
fn default_rtt() -> Duration {
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
/// available; otherwise picks spread over every zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePreference {
    zone: String,
    #[serde(default)]
    min_available: f64,
}

impl ZonePreference {
    /// Prefers `zone`, while at least one endpoint there is available.
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
}

/// Everything an [`EndpointSet`] is configured with.
///
/// Build it in code with the `#[must_use]` setters or deserialize it
/// (YAML `strategy: round_robin`, `zone: {zone: eu-1a}`, …); it is validated
/// by [`EndpointSet::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceConfig {
    strategy: Strategy,
    zone: Option<ZonePreference>,
    panic_threshold: f64,
    seed: Option<u64>,
    outlier: Option<OutlierConfig>,
}

impl Default for BalanceConfig {
    /// P2C over peak EWMA, no zone preference, panic only when nothing is
    /// available, outlier detection with [`OutlierConfig::default`].
    fn default() -> Self {
        BalanceConfig {
            strategy: Strategy::default(),
            zone: None,
            panic_threshold: 0.0,
            seed: None,
            outlier: Some(OutlierConfig::default()),
        }
    }
}

impl BalanceConfig {
    /// The defaults with `strategy`.
    pub fn new(strategy: Strategy) -> Self {
        BalanceConfig {
            strategy,
            ..Self::default()
        }
    }

    /// Sets the strategy.
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Prefers one zone.
    #[must_use]
    pub fn zone_preference(mut self, zone: ZonePreference) -> Self {
        self.zone = Some(zone);
        self
    }

    /// Balances over all endpoints when fewer than this fraction (0.0–1.0)
    /// are available. 0 (the default) means only when none is.
    #[must_use]
    pub fn panic_threshold(mut self, fraction: f64) -> Self {
        self.panic_threshold = fraction;
        self
    }

    /// Seeds the random draws (random, weighted, p2c, keyless consistent
    /// hash) for reproducible tests.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets passive outlier detection.
    #[must_use]
    pub fn outlier_detection(mut self, config: OutlierConfig) -> Self {
        self.outlier = Some(config);
        self
    }

    /// Turns passive outlier detection off.
    #[must_use]
    pub fn without_outlier_detection(mut self) -> Self {
        self.outlier = None;
        self
    }

    /// The strategy.
    pub fn get_strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// The outlier detection settings, if enabled.
    pub fn get_outlier(&self) -> Option<&OutlierConfig> {
        self.outlier.as_ref()
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), InvalidBalanceConfig> {
        let fraction = |name: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(InvalidBalanceConfig::Fraction { name, value: v })
            }
        };
        fraction("panic_threshold", self.panic_threshold)?;
        if let Some(z) = &self.zone {
            fraction("zone.min_available", z.min_available)?;
            if z.zone.is_empty() {
                return Err(InvalidBalanceConfig::EmptyZone);
            }
        }
        match &self.strategy {
            Strategy::P2c { decay, .. } if decay.is_zero() => {
                return Err(InvalidBalanceConfig::ZeroDecay);
            }
            Strategy::ConsistentHash { vnodes: 0 } => {
                return Err(InvalidBalanceConfig::ZeroVnodes);
            }
            _ => {}
        }
        if let Some(o) = &self.outlier {
            o.validate()?;
        }
        Ok(())
    }
}

/// Why a [`BalanceConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBalanceConfig {
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
    /// The outlier detection settings were invalid.
    #[error(transparent)]
    Outlier(#[from] InvalidOutlierConfig),
}
