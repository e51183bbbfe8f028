//! The generic cell rate algorithm over one `AtomicU64`.
//!
//! A cell holds the theoretical arrival time (TAT) of the next request, in
//! nanoseconds since the limiter's base instant. A request at `now` is
//! admitted when `max(tat, now) + T ≤ now + τ`, where `T` is the emission
//! interval and `τ = burst × T`; admitting it moves the TAT forward by `T`
//! with one compare-and-swap.

use super::Quota;
use super::error::RateLimited;
use crate::sync::{AtomicU64, Mutex, Ordering, spin_loop};
use std::time::Duration;

/// The quota as the algorithm uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) t: u64,
    pub(crate) tau: u64,
    pub(crate) burst: u32,
}

impl From<Quota> for Params {
    fn from(q: Quota) -> Self {
        let t = q.emission_nanos();
        Params {
            t,
            tau: t.saturating_mul(u64::from(q.burst())),
            burst: q.burst(),
        }
    }
}

/// What an admitted request learns about the limit (for `RateLimit-*`
/// headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    limit: u32,
    remaining: u32,
    reset: Duration,
}

impl Admitted {
    #[cfg(feature = "redis")]
    pub(crate) fn new(limit: u32, remaining: u32, reset: Duration) -> Self {
        Admitted {
            limit,
            remaining,
            reset,
        }
    }

    /// The burst: how many requests the limit admits at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests that could still be admitted right now.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the full burst is available again.
    pub fn reset(&self) -> Duration {
        self.reset
    }
}

/// One GCRA cell.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    tat: AtomicU64,
}

impl Cell {
    pub(crate) fn new() -> Self {
        Cell {
            tat: AtomicU64::new(0),
        }
    }

    /// Admits or rejects one request at `now`.
    #[inline]
    pub(crate) fn check(&self, p: Params, now: u64) -> Result<Admitted, RateLimited> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(p.t);
            let allow_at = now.saturating_add(p.tau);
            if new_tat > allow_at {
                return Err(RateLimited::new(
                    Duration::from_nanos(new_tat - allow_at),
                    p.burst,
                    Duration::from_nanos(tat.saturating_sub(now)),
                ));
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    let left = allow_at - new_tat;
                    return Ok(Admitted {
                        limit: p.burst,
                        remaining: u32::try_from(left / p.t.max(1)).unwrap_or(u32::MAX),
                        reset: Duration::from_nanos(new_tat - now),
                    });
                }
                Err(seen) => tat = seen,
            }
        }
    }

    /// Converts the cell's debt (how far its TAT is ahead of `now`) from
    /// requests under `old` into the same number of requests under `new`,
    /// so a quota change neither forgives nor inflates what a client used.
    pub(crate) fn rescale(&self, old: Params, new: Params, now: u64) {
        if old.t == new.t {
            return;
        }
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                if tat <= now {
                    return None;
                }
                let debt = u128::from(tat - now) * u128::from(new.t) / u128::from(old.t.max(1));
                Some(now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX)))
            });
    }

    /// Whether the cell is back to a full burst at `now` (so forgetting it
    /// changes nothing).
    pub(crate) fn is_idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }
}

/// Quota parameters that can be replaced at run time while readers load
/// them without a lock (a sequence lock over three atomics).
#[derive(Debug)]
pub(crate) struct SharedParams {
    seq: AtomicU64,
    t: AtomicU64,
    tau: AtomicU64,
    burst: AtomicU64,
    quota: Mutex<Quota>,
}

impl SharedParams {
    pub(crate) fn new(quota: Quota) -> Self {
        let p = Params::from(quota);
        SharedParams {
            seq: AtomicU64::new(0),
            t: AtomicU64::new(p.t),
            tau: AtomicU64::new(p.tau),
            burst: AtomicU64::new(u64::from(p.burst)),
            quota: Mutex::new(quota),
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> Params {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let p = Params {
                t: self.t.load(Ordering::Acquire),
                tau: self.tau.load(Ordering::Acquire),
                burst: self.burst.load(Ordering::Acquire) as u32,
            };
            if before & 1 == 0 && self.seq.load(Ordering::Acquire) == before {
                return p;
            }
            spin_loop();
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        *self
            .quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the quota; returns the parameters it replaced.
    pub(crate) fn store(&self, quota: Quota) -> Params {
        let mut current = self
            .quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = Params::from(*current);
        let p = Params::from(quota);
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.t.store(p.t, Ordering::Release);
        self.tau.store(p.tau, Ordering::Release);
        self.burst.store(u64::from(p.burst), Ordering::Release);
        self.seq.fetch_add(1, Ordering::AcqRel);
        *current = quota;
        old
    }
}

#[cfg(all(test, msp_loom))]
mod loom_tests;
