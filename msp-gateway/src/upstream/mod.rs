//! Upstream services: discovery, balancing, health and per-service
//! resilience, built from msp-discovery and msp-resilience.
//!
//! Each service named in the config's `services:` becomes one
//! [`Upstream`], shared by every route that sends to it:
//!
//! - a [`ServiceView`] of the service in the gateway's
//!   [`Registry`] (memory with the static instances registered by default,
//!   static, etcd with the `etcd` feature), which keeps serving the last
//!   known instances while the registry is unreachable;
//! - an [`EndpointSet`] following the view and balancing with the
//!   service's strategy (power of two choices over peak EWMA by default),
//!   with active [health checks](msp_discovery::health) and passive
//!   [outlier ejection](msp_discovery::outlier);
//! - **one circuit breaker per upstream service**
//!   ([`Breaker`]): every route to the service shares it, and an open
//!   breaker on one service leaves every other service untouched.
//!
//! Around that, each route builds its own resilience stack from its
//! config: timeout → bulkhead → retry (the route's `retry`, else the
//! service's, whose retry budget every route to the service shares;
//! idempotent methods on any failure, other methods only when the
//! connection failed; request bodies replayed up to 64 KiB) → the
//! service's breaker → [`PickEndpoint`] (the balancer picks again for each
//! attempt) → the gateway's pooled client. [`Upstream::retries`] counts
//! the retries sent to the service.
//!
//! Reloading the gateway keeps an `Upstream` whose settings did not change,
//! so a reload resets neither breakers nor ejections nor latency estimates.
//!
//! # Example
//!
//! ```
//! use msp_core::{Instance, ServiceName};
//! use msp_discovery::{BalanceConfig, MemoryRegistry, Strategy};
//! use msp_gateway::upstream::{Upstream, UpstreamSettings};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! registry.insert(Instance::parse("user-service", "127.0.0.1:9001")?)?;
//! let users = Upstream::new(
//!     &registry,
//!     ServiceName::new("user-service")?,
//!     UpstreamSettings::default().balance(BalanceConfig::builder().strategy(Strategy::RoundRobin).build()?),
//! );
//! users.ready().await;
//! assert_eq!(users.endpoints().len(), 1);
//! assert_eq!(users.breaker().state().as_str(), "closed");
//! # Ok(())
//! # }
//! ```

mod balance;
mod error;
pub(crate) mod retry;
pub(crate) mod stack;

pub use self::balance::{PickEndpoint, ResponseFuture, UpstreamInstance};
pub use self::error::NoInstance;

use msp_core::{Instance, ServiceName};
use msp_discovery::health::HealthChecks;
use msp_discovery::{BalanceConfig, EndpointSet, HealthCheck, Registry, ServiceView};
use msp_resilience::CircuitBreakerConfig;
use msp_resilience::circuit_breaker::Breaker;
use msp_resilience::retry::RetryConfig;
use retry::{RetryCount, ServiceRetry};
use std::fmt;
use tokio::task::JoinHandle;

/// How one upstream service is balanced, checked and protected.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct UpstreamSettings {
    balance: BalanceConfig,
    health: Option<HealthCheck>,
    breaker: CircuitBreakerConfig,
    instances: Vec<Instance>,
    retry: Option<RetryConfig>,
}

impl UpstreamSettings {
    /// The balancing strategy and outlier detection (default: p2c over
    /// peak EWMA, outlier detection on).
    pub fn balance(mut self, balance: BalanceConfig) -> Self {
        self.balance = balance;
        self
    }

    /// Active health checks on every instance (default none).
    pub fn health_check(mut self, check: Option<HealthCheck>) -> Self {
        self.health = check;
        self
    }

    /// The service's circuit breaker (default
    /// [`CircuitBreakerConfig::default`]).
    pub fn breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Retries of every route to the service that has no `retry` of its
    /// own (default none), with one retry budget for all of them.
    pub fn retry(mut self, retry: Option<RetryConfig>) -> Self {
        self.retry = retry;
        self
    }

    /// Instances known from the config: balanced from the first request,
    /// before the registry's first answer arrives.
    pub fn instances(mut self, instances: Vec<Instance>) -> Self {
        self.instances = instances;
        self
    }
}

/// One upstream service: its registry view, balanced endpoints, health
/// checks and circuit breaker (see the [module docs](self)).
pub struct Upstream {
    service: ServiceName,
    view: ServiceView,
    set: EndpointSet,
    breaker: Breaker,
    retry: Option<ServiceRetry>,
    retries: RetryCount,
    follow: JoinHandle<()>,
    _health: Option<HealthChecks>,
}

impl Upstream {
    /// Follows `service` in `registry` with `settings`. Must be called on
    /// a tokio runtime (it spawns the view and health-check tasks).
    pub fn new<R: Registry + ?Sized>(
        registry: &R,
        service: ServiceName,
        settings: UpstreamSettings,
    ) -> Self {
        let set = EndpointSet::new(service.clone(), settings.balance);
        if !settings.instances.is_empty() {
            set.update(settings.instances);
        }
        let view = ServiceView::new(registry, service.clone());
        let follow = tokio::spawn(follow(view.clone(), set.clone()));
        let health = settings.health.map(|check| check.spawn(set.clone()));
        Upstream {
            service,
            view,
            set,
            breaker: Breaker::new(settings.breaker),
            retry: settings.retry.map(ServiceRetry::new),
            retries: RetryCount::default(),
            follow,
            _health: health,
        }
    }

    /// The service name.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The balanced endpoints (health, ejection, load).
    pub fn endpoints(&self) -> &EndpointSet {
        &self.set
    }

    /// The registry view (last known instances, staleness).
    pub fn view(&self) -> &ServiceView {
        &self.view
    }

    /// The service's circuit breaker, shared by every route to it.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Retries sent to the service so far (by every route to it, whichever
    /// `retry` settings they use).
    pub fn retries(&self) -> u64 {
        self.retries.get()
    }

    pub(crate) fn service_retry(&self) -> Option<&ServiceRetry> {
        self.retry.as_ref()
    }

    pub(crate) fn retry_count(&self) -> &RetryCount {
        &self.retries
    }

    /// Waits for the registry's first answer about the service.
    pub async fn ready(&self) {
        self.view.ready().await;
        self.set.update(self.view.snapshot().iter().cloned());
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.follow.abort();
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("service", &self.service)
            .field("endpoints", &self.set.len())
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

/// Keeps the endpoint set equal to the view's last known instances.
async fn follow(view: ServiceView, set: EndpointSet) {
    let mut rx = view.subscribe();
    loop {
        let state = rx.borrow_and_update().clone();
        if state.is_ready() {
            set.update(state.instances().iter().cloned());
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
