use super::endpoint::nanos;
use super::rng::AtomicRng;
use super::{
    BalanceConfig, Balancer, Call, ConsistentHash, Endpoint, P2c, Random, RoundRobin, Strategy,
    Weighted,
};
use crate::outlier::EjectionReason;
use arc_swap::ArcSwap;
use msp_core::{Instance, InstanceId, Outcome, ServiceName};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The live endpoints of one service and the balancer over them.
///
/// Membership comes from [`update`](Self::update) (a registry snapshot, fed
/// by the [discovery client](crate::client) or by hand), health from
/// [`set_health`](Self::set_health) (the [health checker](crate::health)),
/// ejections from [`record`](Self::record) (passive
/// [outlier detection](crate::outlier)). Every change rebuilds the balancer
/// once and swaps it in; [`pick`](Self::pick) reads it without a lock.
///
/// Cloning is cheap and clones share everything.
#[derive(Clone)]
pub struct EndpointSet {
    shared: Arc<Shared>,
}

struct Shared {
    service: ServiceName,
    config: BalanceConfig,
    default_rtt: Duration,
    decay_ns: f64,
    rr: Arc<AtomicUsize>,
    rng: Arc<AtomicRng>,
    current: ArcSwap<Snapshot>,
    /// Serialises changes; never held across an `.await`.
    write: Mutex<()>,
    changes: watch::Sender<u64>,
}

/// One immutable view of an [`EndpointSet`]: its members, their state when
/// the view was built, and the balancer over the ones in use.
pub struct Snapshot {
    endpoints: Vec<Endpoint>,
    balancer: Box<dyn Balancer>,
    pool: usize,
    available: usize,
    ejected: usize,
    panic: bool,
    local_zone: bool,
    next_return: Option<Instant>,
}

impl Snapshot {
    /// Every member, sorted by instance id.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// How many endpoints the balancer picks from.
    pub fn pool_len(&self) -> usize {
        self.pool
    }

    /// How many members are healthy and not ejected.
    pub fn available(&self) -> usize {
        self.available
    }

    /// How many members are ejected.
    pub fn ejected(&self) -> usize {
        self.ejected
    }

    /// Whether the set balances over all members because too few are
    /// available (see the [module docs](super)).
    pub fn is_panic(&self) -> bool {
        self.panic
    }

    /// Whether picks are restricted to the preferred zone.
    pub fn is_local_zone(&self) -> bool {
        self.local_zone
    }

    /// The member with this id.
    pub fn get(&self, id: &InstanceId) -> Option<&Endpoint> {
        self.endpoints
            .binary_search_by(|e| e.id().cmp(id))
            .ok()
            .and_then(|i| self.endpoints.get(i))
    }

    fn contains(&self, ep: &Endpoint) -> bool {
        self.get(ep.id()).is_some_and(|e| e.same(ep))
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("endpoints", &self.endpoints)
            .field("pool", &self.pool)
            .field("available", &self.available)
            .field("ejected", &self.ejected)
            .field("panic", &self.panic)
            .field("local_zone", &self.local_zone)
            .finish()
    }
}

impl EndpointSet {
    /// An empty set for `service`.
    pub fn new(service: ServiceName, config: BalanceConfig) -> Self {
        let (decay, default_rtt) = match *config.strategy() {
            Strategy::P2c { decay, default_rtt } => (decay, default_rtt),
            _ => (super::config::default_decay(), super::config::default_rtt()),
        };
        let rng = Arc::new(AtomicRng::new(config.seed()));
        let rr = Arc::new(AtomicUsize::new(0));
        let (changes, _) = watch::channel(0);
        let shared = Shared {
            service,
            default_rtt,
            decay_ns: nanos(decay).max(1.0),
            current: ArcSwap::from_pointee(Snapshot {
                endpoints: Vec::new(),
                balancer: Box::new(RoundRobin::new(Vec::new())),
                pool: 0,
                available: 0,
                ejected: 0,
                panic: false,
                local_zone: false,
                next_return: None,
            }),
            rr,
            rng,
            config,
            write: Mutex::new(()),
            changes,
        };
        EndpointSet {
            shared: Arc::new(shared),
        }
    }

    /// The service these endpoints belong to.
    pub fn service(&self) -> &ServiceName {
        &self.shared.service
    }

    /// The configuration.
    pub fn config(&self) -> &BalanceConfig {
        &self.shared.config
    }

    /// Picks an endpoint (see [`Balancer`]); `None` only when the set is
    /// empty.
    pub fn pick(&self, key: Option<&[u8]>) -> Option<Endpoint> {
        self.shared.current.load().balancer.pick(key)
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.shared.current.load().endpoints.len()
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A receiver that changes whenever the view is rebuilt: members added
    /// or removed, health verdicts, ejections and returns (its value is a
    /// generation counter). The health checker uses it to start and stop
    /// per-endpoint checks.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Waits until the current view satisfies `predicate` (checked at once,
    /// then after every rebuild) and returns it.
    ///
    /// Wrap it in `tokio::time::timeout` to bound the wait.
    pub async fn wait_for(&self, mut predicate: impl FnMut(&Snapshot) -> bool) -> Arc<Snapshot> {
        let mut rx = self.subscribe();
        loop {
            rx.borrow_and_update();
            let snap = self.snapshot();
            if predicate(&snap) {
                return snap;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`: unreachable while we hold it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Replaces the membership with `instances`.
    ///
    /// Endpoints whose instance is unchanged keep their state (health,
    /// ejection, latency); new or changed instances start fresh; missing
    /// ones leave. Returns whether membership changed.
    pub fn update(&self, instances: impl IntoIterator<Item = Instance>) -> bool {
        let _w = self.lock();
        let old = self.shared.current.load_full();
        let mut by_id: HashMap<&InstanceId, &Endpoint> =
            old.endpoints.iter().map(|e| (e.id(), e)).collect();
        let mut next: Vec<Endpoint> = Vec::new();
        let mut changed = false;
        let mut seen: HashSet<InstanceId> = HashSet::new();
        for instance in instances {
            if !seen.insert(instance.id().clone()) {
                continue; // first occurrence of an id wins
            }
            match by_id.remove(instance.id()) {
                Some(e) if e.instance() == &instance => next.push(e.clone()),
                _ => {
                    changed = true;
                    next.push(Endpoint::new(instance, self.shared.default_rtt));
                }
            }
        }
        changed |= !by_id.is_empty();
        if changed {
            next.sort_by(|a, b| a.id().cmp(b.id()));
            self.rebuild(next);
        }
        changed
    }

    /// Adds or replaces one instance.
    pub fn insert(&self, instance: Instance) -> bool {
        let mut all: Vec<Instance> = self
            .snapshot()
            .endpoints
            .iter()
            .filter(|e| e.id() != instance.id())
            .map(|e| e.instance().clone())
            .collect();
        all.push(instance);
        self.update(all)
    }

    /// Removes the instance with this id.
    pub fn remove(&self, id: &InstanceId) -> bool {
        let keep: Vec<Instance> = self
            .snapshot()
            .endpoints
            .iter()
            .filter(|e| e.id() != id)
            .map(|e| e.instance().clone())
            .collect();
        self.update(keep)
    }

    /// Sets the active-health-check verdict of a member. No effect if
    /// `endpoint` is no longer a member. Returns whether anything changed.
    pub fn set_health(&self, endpoint: &Endpoint, healthy: bool) -> bool {
        let _w = self.lock();
        let snap = self.shared.current.load_full();
        if !snap.contains(endpoint) || !endpoint.set_healthy(healthy) {
            return false;
        }
        if healthy {
            tracing::info!(service = %self.shared.service, instance = %endpoint.id(), "endpoint passed its health checks");
        } else {
            tracing::warn!(service = %self.shared.service, instance = %endpoint.id(), addr = %endpoint.addr(), "endpoint failed its health checks, taken out of balancing");
        }
        self.rebuild(snap.endpoints.clone());
        true
    }

    /// Reports how a call on an endpoint ended.
    ///
    /// Lowers the in-flight count, feeds the round-trip time into the
    /// endpoint's peak-EWMA estimate (a failure can raise the estimate but
    /// never lower it: a fast error is not a fast endpoint) and, with
    /// outlier detection on, counts the outcome towards ejection.
    /// [`Outcome::Ignored`] only lowers the in-flight count.
    pub fn record(&self, call: Call, outcome: Outcome) {
        let now = Instant::now();
        let (ep, rtt) = call.finish(now);
        match outcome {
            Outcome::Success => ep.observe_rtt(rtt, now, self.shared.decay_ns),
            Outcome::Failure => {
                if rtt >= ep.rtt_estimate(Duration::from_nanos(self.shared.decay_ns as u64)) {
                    ep.observe_rtt(rtt, now, self.shared.decay_ns);
                }
            }
            Outcome::Ignored => return,
        }
        self.return_expired(now);
        let Some(cfg) = &self.shared.config.outlier() else {
            return;
        };
        let verdict = cfg.observe(&mut ep.outlier(), outcome, now);
        if let Some(reason) = verdict {
            self.try_eject(&ep, reason, now);
        }
    }

    /// Returns ejected endpoints whose ejection time is over. Runs on its
    /// own timer and on every [`record`](Self::record); call it directly
    /// only when driving the set without a tokio runtime.
    pub fn return_expired(&self, now: Instant) {
        let due = self
            .shared
            .current
            .load()
            .next_return
            .is_some_and(|t| t <= now);
        if !due {
            return;
        }
        let Some(cfg) = &self.shared.config.outlier() else {
            return;
        };
        let _w = self.lock();
        let snap = self.shared.current.load_full();
        let mut any = false;
        for ep in snap.endpoints.iter().filter(|e| e.is_ejected()) {
            let mut state = ep.outlier();
            if cfg.should_return(&state, now) {
                cfg.on_return(&mut state, now);
                drop(state);
                ep.set_ejected(false);
                any = true;
                tracing::info!(service = %self.shared.service, instance = %ep.id(), "ejection over, endpoint back in balancing");
            }
        }
        if any {
            self.rebuild(snap.endpoints.clone());
        }
    }

    fn try_eject(&self, ep: &Endpoint, reason: EjectionReason, now: Instant) {
        let Some(cfg) = &self.shared.config.outlier() else {
            return;
        };
        let _w = self.lock();
        let snap = self.shared.current.load_full();
        if !snap.contains(ep) || ep.is_ejected() {
            return;
        }
        let allowed = cfg.max_ejected(snap.endpoints.len());
        if snap.ejected >= allowed {
            tracing::debug!(service = %self.shared.service, instance = %ep.id(), ?reason, ejected = snap.ejected, allowed, "outlier not ejected: max ejected percent reached");
            return;
        }
        let until = cfg.eject(&mut ep.outlier(), now);
        ep.set_ejected(true);
        tracing::warn!(service = %self.shared.service, instance = %ep.id(), addr = %ep.addr(), ?reason, for_ = ?until.saturating_duration_since(now), "outlier ejected");
        metrics::counter!("msp_discovery_ejections_total", "service" => self.shared.service.to_string(), "reason" => reason.as_str()).increment(1);
        self.rebuild(snap.endpoints.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Shared> = Arc::downgrade(&self.shared);
            handle.spawn(async move {
                tokio::time::sleep_until(until).await;
                if let Some(shared) = weak.upgrade() {
                    EndpointSet { shared }.return_expired(Instant::now());
                }
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.shared
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Builds and swaps in the view of `endpoints` (sorted by id). Called
    /// with the write lock held.
    fn rebuild(&self, endpoints: Vec<Endpoint>) {
        let cfg = &self.shared.config;
        let available: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| e.is_available())
            .cloned()
            .collect();
        let ejected: Vec<&Endpoint> = endpoints.iter().filter(|e| e.is_ejected()).collect();
        let next_return = cfg.outlier().and_then(|_| {
            ejected
                .iter()
                .filter_map(|e| e.outlier().ejected_until())
                .min()
        });
        let total = endpoints.len();
        let panic = total > 0
            && (available.is_empty()
                || (available.len() as f64) < cfg.panic_threshold() * total as f64);
        let pool = if panic {
            endpoints.clone()
        } else {
            available.clone()
        };
        let (pool, local_zone) = match cfg.zone_preference() {
            Some(pref) => {
                let local_total = endpoints
                    .iter()
                    .filter(|e| e.instance().zone() == Some(pref.zone.as_str()))
                    .count();
                let local: Vec<Endpoint> = pool
                    .iter()
                    .filter(|e| e.instance().zone() == Some(pref.zone.as_str()))
                    .cloned()
                    .collect();
                if !local.is_empty()
                    && local.len() as f64 >= pref.min_available * local_total as f64
                {
                    (local, true)
                } else {
                    (pool, false)
                }
            }
            None => (pool, false),
        };
        if panic {
            tracing::warn!(service = %self.shared.service, total, available = available.len(), "panic mode: too few endpoints available, balancing over all of them");
        }
        let labels = [("service", self.shared.service.to_string())];
        metrics::gauge!("msp_discovery_endpoints", &labels).set(total as f64);
        metrics::gauge!("msp_discovery_endpoints_available", &labels).set(available.len() as f64);
        metrics::gauge!("msp_discovery_endpoints_ejected", &labels).set(ejected.len() as f64);
        metrics::gauge!("msp_discovery_panic_mode", &labels).set(if panic { 1.0 } else { 0.0 });
        let snapshot = Snapshot {
            pool: pool.len(),
            available: available.len(),
            ejected: ejected.len(),
            panic,
            local_zone,
            next_return,
            balancer: self.build_balancer(pool),
            endpoints,
        };
        self.shared.current.store(Arc::new(snapshot));
        self.shared.changes.send_modify(|g| *g += 1);
    }

    fn build_balancer(&self, pool: Vec<Endpoint>) -> Box<dyn Balancer> {
        let rng = self.shared.rng.clone();
        match self.shared.config.strategy() {
            Strategy::RoundRobin => {
                Box::new(RoundRobin::with_counter(pool, self.shared.rr.clone()))
            }
            Strategy::Random => Box::new(Random::with_rng(pool, rng)),
            Strategy::Weighted => Box::new(Weighted::with_rng(pool, rng)),
            Strategy::P2c { decay, .. } => Box::new(P2c::with_rng(pool, *decay, rng)),
            Strategy::ConsistentHash { vnodes } => {
                Box::new(ConsistentHash::with_rng(pool, *vnodes, rng))
            }
        }
    }
}

impl Balancer for EndpointSet {
    fn pick(&self, key: Option<&[u8]>) -> Option<Endpoint> {
        EndpointSet::pick(self, key)
    }
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSet")
            .field("service", &self.shared.service)
            .field("strategy", self.shared.config.strategy())
            .field("snapshot", &self.shared.current.load())
            .finish()
    }
}
