//! Atomics, a lock, a fence and a spin hint for the small lock-free
//! algorithms (the GCRA cell and its quota, the retry budget's slots, the
//! breaker's state word and probe permits, the bulkhead's slot count):
//! std's in every build, loom's when the crate is built with
//! `RUSTFLAGS="--cfg msp_loom"`, so the loom models (the `loom_tests`
//! modules, run by `scripts/test-all.sh`) explore every interleaving of the
//! real code rather than of a copy.
//!
//! The flag is ours, not the customary `loom`: tokio configures its `net`
//! module out under `cfg(loom)`, so `--cfg loom` breaks every dependency
//! that uses it (hyper-util among this crate's dev-dependencies).

#[cfg(msp_loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(msp_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(msp_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};

#[cfg(not(msp_loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(msp_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(msp_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

pub(crate) use std::sync::atomic::Ordering;

/// Runs a loom model: every interleaving of `f`'s threads with at most
/// two preemptions per execution (bugs of these algorithms need one), or
/// `LOOM_MAX_PREEMPTIONS` when that is set; unbounded, the three-thread
/// models ran for minutes.
#[cfg(all(test, msp_loom))]
pub(crate) fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}
