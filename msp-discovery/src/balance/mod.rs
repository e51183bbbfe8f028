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
//! [`panic_threshold`](BalanceConfigBuilder::panic_threshold) fraction — the set
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
//! let config = BalanceConfig::builder()
//!     .strategy(Strategy::RoundRobin)
//!     .zone_preference(ZonePreference::new("zone-a"))
//!     .seed(7)
//!     .build()?;
//! let set = EndpointSet::new(svc.clone(), config);
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

mod config;
mod endpoint;
mod hash;
mod p2c;
mod random;
pub(crate) mod rng;
mod round_robin;
mod set;

pub use self::config::{
    BalanceConfig, BalanceConfigBuilder, BalanceConfigError, Strategy, ZonePreference,
};
pub use self::endpoint::{Call, Endpoint};
pub use self::hash::ConsistentHash;
pub use self::p2c::P2c;
pub use self::random::{Random, Weighted};
pub use self::round_robin::RoundRobin;
pub use self::set::{EndpointSet, Snapshot};

use std::fmt;

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
