//! One instance as the balancer sees it: the instance plus its live health,
//! ejection and load state.

use crate::outlier::OutlierState;
use msp_core::{Instance, InstanceId};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// An instance plus the state the balancer, the health checker and outlier
/// detection keep for it.
///
/// Cloning is a reference-count increment; clones share the state. An
/// `Endpoint` is created by an [`EndpointSet`](crate::balance::EndpointSet)
/// (or [`Endpoint::new`] for a hand-built balancer) and lives as long as the
/// instance stays registered with the same address: a re-registration with a
/// changed instance starts from fresh state.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    instance: Instance,
    /// Result of active health checks (`true` until a check says otherwise).
    healthy: AtomicBool,
    /// Set by passive outlier ejection.
    ejected: AtomicBool,
    load: Load,
    outlier: Mutex<OutlierState>,
}

/// `stamp_ns` of an endpoint without observations: its default RTT does
/// not decay, so fresh endpoints compare equal instead of by creation time.
const NEVER: u64 = u64::MAX;

/// Peak-EWMA load, lock-free: in-flight count, RTT estimate (f64 bits) and
/// the time of its last update (nanoseconds since `epoch`).
struct Load {
    epoch: Instant,
    in_flight: AtomicU32,
    rtt_ns: AtomicU64,
    stamp_ns: AtomicU64,
}

impl Endpoint {
    /// Wraps an instance with fresh state: healthy, not ejected, no calls in
    /// flight and an RTT estimate of `default_rtt`.
    pub fn new(instance: Instance, default_rtt: Duration) -> Self {
        let now = Instant::now();
        Endpoint {
            inner: Arc::new(Inner {
                instance,
                healthy: AtomicBool::new(true),
                ejected: AtomicBool::new(false),
                load: Load {
                    epoch: now,
                    in_flight: AtomicU32::new(0),
                    rtt_ns: AtomicU64::new(nanos(default_rtt).max(1.0).to_bits()),
                    stamp_ns: AtomicU64::new(NEVER),
                },
                outlier: Mutex::new(OutlierState::new(now)),
            }),
        }
    }

    /// The instance.
    pub fn instance(&self) -> &Instance {
        &self.inner.instance
    }

    /// The instance id.
    pub fn id(&self) -> &InstanceId {
        self.inner.instance.id()
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.inner.instance.addr()
    }

    /// Whether active health checks consider the endpoint healthy (`true`
    /// when no check has failed it, including when no checker runs).
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    /// Whether passive outlier detection has ejected the endpoint.
    pub fn is_ejected(&self) -> bool {
        self.inner.ejected.load(Ordering::Acquire)
    }

    /// Healthy and not ejected: eligible for traffic.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// Calls started with [`start`](Self::start) and not finished yet.
    pub fn in_flight(&self) -> u32 {
        self.inner.load.in_flight.load(Ordering::Relaxed)
    }

    /// The current peak-EWMA round-trip estimate, decayed to now.
    pub fn rtt_estimate(&self, decay: Duration) -> Duration {
        let ns = self
            .inner
            .load
            .decayed_rtt(Instant::now(), nanos(decay).max(1.0));
        Duration::from_nanos(ns as u64)
    }

    /// Marks a call as started: the in-flight count goes up until the
    /// returned [`Call`] is finished (through
    /// [`EndpointSet::record`](crate::balance::EndpointSet::record)) or
    /// dropped.
    pub fn start(&self) -> Call {
        self.inner.load.in_flight.fetch_add(1, Ordering::Relaxed);
        Call {
            endpoint: self.clone(),
            started: Instant::now(),
            done: false,
        }
    }

    /// Whether `self` and `other` are the same endpoint (not merely equal
    /// instances).
    pub fn same(&self, other: &Endpoint) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The peak-EWMA cost used by power-of-two-choices: the decayed RTT
    /// estimate times (in-flight + 1), as in tower's `PeakEwma`.
    ///
    /// An endpoint without any observation yet costs `default_rtt ×
    /// in-flight` instead: zero while idle, so a new instance is tried at
    /// once (and measured) rather than starved behind faster-looking
    /// measured ones, but no cheaper than the default once it has a call.
    pub(crate) fn p2c_cost(&self, now: Instant, decay_ns: f64) -> f64 {
        let load = &self.inner.load;
        let in_flight = f64::from(load.in_flight.load(Ordering::Relaxed));
        if load.stamp_ns.load(Ordering::Relaxed) == NEVER {
            return f64::from_bits(load.rtt_ns.load(Ordering::Relaxed)) * in_flight;
        }
        load.decayed_rtt(now, decay_ns) * (in_flight + 1.0)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.inner.healthy.swap(healthy, Ordering::AcqRel) != healthy
    }

    pub(crate) fn set_ejected(&self, ejected: bool) -> bool {
        self.inner.ejected.swap(ejected, Ordering::AcqRel) != ejected
    }

    pub(crate) fn outlier(&self) -> MutexGuard<'_, OutlierState> {
        // The guarded state is plain counters; a panic while holding the lock
        // cannot leave it unusable, so a poisoned lock is recovered.
        self.inner
            .outlier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn observe_rtt(&self, rtt: Duration, now: Instant, decay_ns: f64) {
        self.inner.load.observe(nanos(rtt), now, decay_ns);
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", self.id())
            .field("addr", &self.addr())
            .field("healthy", &self.is_healthy())
            .field("ejected", &self.is_ejected())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Load {
    fn since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The estimate decayed towards zero for the time since its last update,
    /// so an endpoint that once was slow is tried again after a while.
    fn decayed_rtt(&self, now: Instant, decay_ns: f64) -> f64 {
        let rtt = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        let stamp = self.stamp_ns.load(Ordering::Relaxed);
        if stamp == NEVER {
            return rtt;
        }
        let elapsed = self.since_epoch(now).saturating_sub(stamp) as f64;
        rtt * (-elapsed / decay_ns).exp()
    }

    /// Peak-EWMA update: a slower observation replaces the estimate at once;
    /// a faster one is blended in by how long ago the last update was.
    fn observe(&self, rtt: f64, now: Instant, decay_ns: f64) {
        let now_ns = self.since_epoch(now);
        let prev_stamp = self.stamp_ns.swap(now_ns, Ordering::Relaxed);
        // The first observation replaces the default guess outright.
        let decay = if prev_stamp == NEVER {
            0.0
        } else {
            (-(now_ns.saturating_sub(prev_stamp) as f64) / decay_ns).exp()
        };
        // Concurrent observers race benignly: each applies its sample to the
        // latest estimate it sees (the same trade-off as any lock-free EWMA).
        let _ = self
            .rtt_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let est = f64::from_bits(bits);
                let next = if rtt > est || decay == 0.0 {
                    rtt
                } else {
                    est * decay + rtt * (1.0 - decay)
                };
                Some(next.max(1.0).to_bits())
            });
    }
}

/// A call in progress on an [`Endpoint`], from [`Endpoint::start`].
///
/// Hand it back to [`EndpointSet::record`](crate::balance::EndpointSet::record)
/// with the call's outcome: that updates the peak-EWMA latency and feeds
/// outlier detection. Dropping it unrecorded (a cancelled call) only lowers
/// the in-flight count.
#[must_use = "record the outcome with EndpointSet::record, or drop it if the call was cancelled"]
pub struct Call {
    endpoint: Endpoint,
    started: Instant,
    done: bool,
}

impl Call {
    /// The endpoint the call went to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// When the call started.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn finish(mut self, now: Instant) -> (Endpoint, Duration) {
        self.done = true;
        self.endpoint
            .inner
            .load
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        let elapsed = now.saturating_duration_since(self.started);
        (self.endpoint.clone(), elapsed)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.endpoint
                .inner
                .load
                .in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("endpoint", self.endpoint.id())
            .field("started", &self.started)
            .finish()
    }
}

pub(crate) fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}
