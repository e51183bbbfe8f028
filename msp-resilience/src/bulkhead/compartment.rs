//! The shared bulkhead state and its non-tower API.

use super::config::{Adaptive, BulkheadConfig};
use super::error::BulkheadFull;
use crate::sync::{AtomicU32, Ordering};
use msp_core::classify::Outcome;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A value alone on its cache line(s).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug)]
struct Slots {
    in_flight: AtomicU32,
    limit: AtomicU32,
}

struct Shared {
    slots: Padded<Slots>,
    queued: Padded<AtomicU32>,
    notify: Notify,
    config: BulkheadConfig,
    adaptive: Option<Adaptive>,
    rejected: metrics::Counter,
    limit_gauge: metrics::Gauge,
}

impl Shared {
    /// Takes a slot if one is free: one compare-and-swap.
    #[inline]
    fn try_take(&self) -> Option<u32> {
        let s = &self.slots.0;
        let limit = s.limit.load(Ordering::SeqCst);
        let mut cur = s.in_flight.load(Ordering::SeqCst);
        loop {
            if cur >= limit {
                return None;
            }
            match s.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(cur + 1),
                Err(seen) => cur = seen,
            }
        }
    }

    #[inline]
    fn release(&self) {
        self.slots.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Pairs with the waiter's increment of `queued` before it retries:
        // either it sees the freed slot or we see it waiting.
        if self.queued.0.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    fn set_limit(&self, new: u32) {
        let old = self.slots.0.limit.swap(new, Ordering::SeqCst);
        self.grown(old, new);
    }

    fn grown(&self, old: u32, new: u32) {
        self.limit_gauge.set(f64::from(new));
        for _ in old..new.min(old.saturating_add(self.queued.0.load(Ordering::SeqCst))) {
            self.notify.notify_one();
        }
    }

    fn adapt(&self, a: &Adaptive, outcome: Outcome, elapsed: Duration, in_flight_at_start: u32) {
        let slow = elapsed >= a.latency_threshold;
        let overloaded = slow || outcome == Outcome::Failure;
        if !overloaded && outcome != Outcome::Success {
            return;
        }
        let limit = &self.slots.0.limit;
        let result = limit.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
            let new = if overloaded {
                let cut = (f64::from(old) * a.decrease_factor) as u32;
                cut.min(old.saturating_sub(1)).max(a.min)
            } else if in_flight_at_start.saturating_mul(2) >= old {
                old.saturating_add(a.increase).min(a.max)
            } else {
                old
            };
            (new != old).then_some(new)
        });
        if let Ok(old) = result {
            let new = limit.load(Ordering::SeqCst);
            if new > old {
                self.grown(old, new);
            } else {
                self.limit_gauge.set(f64::from(new));
            }
        }
    }
}

/// A bulkhead: a limit on concurrent calls with a bounded queue, shared by
/// every clone.
///
/// Taking a free slot is one compare-and-swap; returning it is one atomic
/// subtraction (and a wake-up when calls are queued). Queued calls wait on
/// a [`Notify`] and are not strictly first-in first-out: a call arriving
/// as a slot frees may take it before a queued one; `max_wait` bounds how
/// long any call waits.
///
/// # Example
///
/// ```
/// use msp_resilience::bulkhead::{BulkheadConfig, Compartment};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = Compartment::new(BulkheadConfig::builder().max_concurrent(2).build()?);
/// let a = db.try_acquire()?;
/// let b = db.acquire().await?;
/// assert!(db.try_acquire().is_err());
/// drop(a);
/// assert_eq!(db.in_flight(), 1);
/// # drop(b);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Compartment {
    shared: Arc<Shared>,
}

impl fmt::Debug for Compartment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compartment")
            .field("name", &self.shared.config.name())
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

impl Compartment {
    /// A bulkhead with `config`.
    pub fn new(config: BulkheadConfig) -> Self {
        let name = config.name().to_owned();
        let limit_gauge = metrics::gauge!("msp_bulkhead_limit", "bulkhead" => name.clone());
        limit_gauge.set(f64::from(config.max_concurrent()));
        Compartment {
            shared: Arc::new(Shared {
                slots: Padded(Slots {
                    in_flight: AtomicU32::new(0),
                    limit: AtomicU32::new(config.max_concurrent()),
                }),
                queued: Padded(AtomicU32::new(0)),
                notify: Notify::new(),
                adaptive: config.adaptive(),
                rejected: metrics::counter!("msp_bulkhead_rejected_total", "bulkhead" => name),
                limit_gauge,
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.shared.config
    }

    /// Calls allowed at once right now.
    pub fn limit(&self) -> u32 {
        self.shared.slots.0.limit.load(Ordering::SeqCst)
    }

    /// Sets the limit (at least 1; within the adaptive bounds when
    /// adaptive). Calls above a lowered limit finish normally; new calls
    /// wait until the count drops below it.
    pub fn set_limit(&self, limit: u32) {
        let limit = match self.shared.adaptive {
            Some(a) => limit.clamp(a.min, a.max),
            None => limit.max(1),
        };
        self.shared.set_limit(limit);
    }

    /// Calls holding a slot.
    pub fn in_flight(&self) -> u32 {
        self.shared.slots.0.in_flight.load(Ordering::SeqCst)
    }

    /// Calls waiting for a slot.
    pub fn queued(&self) -> u32 {
        self.shared.queued.0.load(Ordering::SeqCst)
    }

    #[inline]
    fn permit(&self, in_flight: u32) -> BulkheadPermit {
        BulkheadPermit {
            shared: self.shared.clone(),
            sample: self.shared.adaptive.map(|_| Sample {
                start: Instant::now(),
                in_flight,
            }),
        }
    }

    /// Takes a slot without waiting.
    #[inline]
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        match self.shared.try_take() {
            Some(n) => Ok(self.permit(n)),
            None => {
                self.shared.rejected.increment(1);
                Err(BulkheadFull::queue_full())
            }
        }
    }

    /// Takes a slot, waiting in the queue when all are taken (if the queue
    /// has room) for at most `max_wait`.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        if let Some(n) = self.shared.try_take() {
            return Ok(self.permit(n));
        }
        self.acquire_queued().await
    }

    pub(crate) async fn acquire_queued(&self) -> Result<BulkheadPermit, BulkheadFull> {
        let s = &*self.shared;
        let max_queue = s.config.max_queue();
        let queued = s
            .queued
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max_queue).then_some(n + 1)
            });
        if queued.is_err() {
            s.rejected.increment(1);
            return Err(BulkheadFull::queue_full());
        }
        let _queued = Queued(s);
        let deadline = s.config.max_wait().map(|d| Instant::now() + d);
        loop {
            let notified = s.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(n) = s.try_take() {
                return Ok(self.permit(n));
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        // A last chance: a slot may have freed as time ran out.
                        if let Some(n) = s.try_take() {
                            return Ok(self.permit(n));
                        }
                        s.rejected.increment(1);
                        return Err(BulkheadFull::wait_elapsed());
                    }
                }
                None => notified.await,
            }
        }
    }
}

struct Queued<'a>(&'a Shared);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    in_flight: u32,
}

/// A slot in a bulkhead, returned when dropped.
///
/// With an adaptive limit, [`record`](BulkheadPermit::record) the call's
/// outcome to adjust the limit (the tower layers do it).
#[must_use = "the slot is returned when the permit is dropped"]
pub struct BulkheadPermit {
    shared: Arc<Shared>,
    sample: Option<Sample>,
}

impl fmt::Debug for BulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.shared.config.name())
            .finish()
    }
}

impl BulkheadPermit {
    /// Feeds the call's outcome and latency (since the slot was taken) to
    /// the adaptive limit; once per permit, later calls are ignored. The
    /// slot is still held until the permit is dropped.
    pub fn record(&mut self, outcome: Outcome) {
        if let (Some(sample), Some(a)) = (self.sample.take(), self.shared.adaptive.as_ref()) {
            self.shared
                .adapt(a, outcome, sample.start.elapsed(), sample.in_flight);
        }
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Compartment {
    /// Takes a free slot, without counting a rejection when there is none.
    #[inline]
    pub(crate) fn try_take_permit(&self) -> Option<BulkheadPermit> {
        self.shared.try_take().map(|n| self.permit(n))
    }

    pub(crate) fn count_rejection(&self) {
        self.shared.rejected.increment(1);
    }
}

#[cfg(all(test, msp_loom))]
mod loom_tests;
