//! A retry budget shared by every clone of a service: retries may add at
//! most a percentage of the recent request rate, plus a small floor.

use crate::sync::{AtomicU64, Ordering, fence};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Why a budget configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetConfigError {
    /// `ttl` was outside 1 s ..= 60 s.
    #[error("retry budget ttl must be between 1s and 60s, got {0:?}")]
    Ttl(Duration),
    /// `percent` was negative, above 1000 or not a number.
    #[error("retry budget percent must be between 0 and 1000, got {0}")]
    Percent(f64),
}

/// Settings of a [`RetryBudget`]: `{"percent": 20.0, "min_per_second": 10, "ttl": "10s"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Retries allowed as a percentage of the requests of the last `ttl`
    /// (default 20.0, that is one retry per five requests).
    pub percent: f64,
    /// Retries allowed per second regardless of traffic, so a quiet service
    /// can still retry (default 10).
    pub min_per_second: u32,
    /// How long a request counts towards the budget (default 10 s).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl BudgetConfig {
    /// Checks the ranges [`RetryBudget::from_config`] accepts.
    pub(crate) fn validate(&self) -> Result<(), BudgetConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(BudgetConfigError::Ttl(self.ttl));
        }
        if !(0.0..=1000.0).contains(&self.percent) {
            return Err(BudgetConfigError::Percent(self.percent));
        }
        Ok(())
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            percent: 20.0,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

const SLOTS: usize = 10;
/// One withdrawal in budget units; a deposit is `percent × 10` units.
const WITHDRAW: i64 = 1000;
const VALUE_BITS: u32 = 40;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const VALUE_MAX: i64 = (1 << (VALUE_BITS - 1)) - 1;
const EPOCH_MASK: u64 = (1 << (64 - VALUE_BITS)) - 1;

/// A retry budget (the TPS budget of Finagle and linkerd): every request
/// deposits, every retry withdraws, and deposits expire after `ttl`.
///
/// With `percent = 20` and `min_per_second = 10`, retries may add at most
/// 20 % to the load of the last `ttl`, plus 10 per second: when the
/// downstream fails everything, retries stop amplifying the outage instead
/// of multiplying it by the number of attempts.
///
/// Cloning shares the budget. It is lock-free: the window is ten slots,
/// each one `AtomicU64` holding the slot's period and balance, updated with
/// one compare-and-swap per request.
///
/// ```
/// use msp_resilience::retry::RetryBudget;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 50 % of recent requests, no floor.
/// let budget = RetryBudget::new(50.0, 0, Duration::from_secs(10))?;
/// for _ in 0..4 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "four requests pay for two retries");
///
/// // Deposits expire after the ttl.
/// tokio::time::advance(Duration::from_secs(11)).await;
/// budget.deposit();
/// assert!(!budget.withdraw());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    slot_nanos: u64,
    slots: [AtomicU64; SLOTS],
    deposit: i64,
    reserve: i64,
    config: BudgetConfig,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.inner.config)
            .field("balance", &self.balance())
            .finish()
    }
}

impl Default for RetryBudget {
    /// 20 % of the last 10 s plus 10 retries per second, like linkerd.
    fn default() -> Self {
        Self::build(BudgetConfig::default())
    }
}

/// A slot word: the period in the high bits, the balance biased by
/// `VALUE_MAX` (so it is never negative) in the low 40 bits.
fn pack(epoch: u64, value: i64) -> u64 {
    let biased = (value.clamp(-VALUE_MAX, VALUE_MAX) + VALUE_MAX) as u64;
    ((epoch & EPOCH_MASK) << VALUE_BITS) | (biased & VALUE_MASK)
}

fn unpack(word: u64) -> (u64, i64) {
    let epoch = word >> VALUE_BITS;
    let value = (word & VALUE_MASK) as i64 - VALUE_MAX;
    (epoch, value)
}

impl RetryBudget {
    /// A budget of `percent` % of the requests of the last `ttl`, plus
    /// `min_per_second` retries per second.
    pub fn new(
        percent: f64,
        min_per_second: u32,
        ttl: Duration,
    ) -> Result<Self, BudgetConfigError> {
        Self::from_config(BudgetConfig {
            percent,
            min_per_second,
            ttl,
        })
    }

    /// A budget from its config.
    pub fn from_config(config: BudgetConfig) -> Result<Self, BudgetConfigError> {
        config.validate()?;
        Ok(Self::build(config))
    }

    /// A budget from a config that passed [`BudgetConfig::validate`].
    pub(crate) fn build(config: BudgetConfig) -> Self {
        let slot_nanos = (config.ttl.as_nanos() / SLOTS as u128).max(1) as u64;
        // `percent` % of WITHDRAW per request: 20 % deposits 200 units, five
        // requests pay for one retry.
        let deposit = (config.percent * WITHDRAW as f64 / 100.0).round() as i64;
        let reserve = i64::from(config.min_per_second)
            .saturating_mul(config.ttl.as_secs() as i64)
            .saturating_mul(WITHDRAW);
        RetryBudget {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slot_nanos,
                slots: std::array::from_fn(|_| AtomicU64::new(pack(0, 0))),
                deposit,
                reserve,
                config,
            }),
        }
    }

    /// The budget's settings.
    pub fn config(&self) -> BudgetConfig {
        self.inner.config
    }

    fn epoch(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.inner.start);
        // u64 nanoseconds last 584 years; u64 division is much cheaper
        // than u128 on the per-request path.
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        nanos / self.inner.slot_nanos
    }

    fn add(&self, epoch: u64, amount: i64) {
        let slot = &self.inner.slots[(epoch % SLOTS as u64) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        // Fast path: the slot is current and the sum stays in range, so one
        // `fetch_add` on the biased value does it (no retry loop under
        // contention). The bias keeps the low bits unsigned, so adding
        // never carries into the epoch bits.
        let (e, v) = unpack(cur);
        if e == epoch & EPOCH_MASK && (v + amount).abs() < VALUE_MAX / 2 && v.abs() < VALUE_MAX / 2
        {
            slot.fetch_add(amount as u64, Ordering::AcqRel);
            return;
        }
        loop {
            let (e, v) = unpack(cur);
            let base = if e == epoch & EPOCH_MASK { v } else { 0 };
            let next = pack(
                epoch,
                base.saturating_add(amount)
                    .clamp(-VALUE_MAX / 2, VALUE_MAX / 2),
            );
            match slot.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn balance_at(&self, epoch: u64) -> i64 {
        let now = epoch & EPOCH_MASK;
        let live: i64 = self
            .inner
            .slots
            .iter()
            .map(|s| unpack(s.load(Ordering::Acquire)))
            .filter(|&(e, _)| now.wrapping_sub(e) & EPOCH_MASK < SLOTS as u64)
            .map(|(_, v)| v)
            .sum();
        live.saturating_add(self.inner.reserve)
    }

    /// Records one request (called once per original request, not per
    /// retry).
    pub fn deposit(&self) {
        if self.inner.deposit != 0 {
            self.add(self.epoch(), self.inner.deposit);
        }
    }

    /// Takes one retry from the budget; `false` when it is exhausted.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(self.epoch())
    }

    /// [`withdraw`](Self::withdraw) in the slot period `epoch`.
    fn withdraw_at(&self, epoch: u64) -> bool {
        // Cheap refusal when the budget is plainly empty.
        if self.balance_at(epoch) < WITHDRAW {
            return false;
        }
        // Take first, then look: a check followed by a separate take let
        // every thread racing for the last retry see it and take it (the
        // stress test `retry_budget_never_grants_more_than_its_bound_across_
        // os_threads` found up to one extra retry per racing thread). Now
        // each taker sees every take ordered before its own, so at most the
        // balance is granted; racers that both see a negative balance both
        // give back, which may refuse a retry the budget had (never grant
        // one it had not). The SeqCst fence orders a take in one second's
        // slot against a racer's look at it when the two fall either side
        // of a slot boundary.
        self.add(epoch, -WITHDRAW);
        fence(Ordering::SeqCst);
        if self.balance_at(epoch) < 0 {
            self.add(epoch, WITHDRAW);
            return false;
        }
        true
    }

    /// How many retries the budget would allow right now.
    pub fn balance(&self) -> u64 {
        (self.balance_at(self.epoch()).max(0) / WITHDRAW) as u64
    }
}

#[cfg(all(test, msp_loom))]
mod loom_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_negative_values() {
        for (e, v) in [
            (0, 0),
            (5, -1000),
            (EPOCH_MASK, VALUE_MAX / 2),
            (7, -VALUE_MAX / 2),
        ] {
            assert_eq!(unpack(pack(e, v)), (e, v));
        }
    }

    #[test]
    fn fast_path_add_never_touches_the_epoch() {
        let word = AtomicU64::new(pack(9, -5));
        word.fetch_add(7u64, Ordering::Relaxed);
        assert_eq!(unpack(word.load(Ordering::Relaxed)), (9, 2));
        word.fetch_add((-1000i64) as u64, Ordering::Relaxed);
        assert_eq!(unpack(word.load(Ordering::Relaxed)), (9, -998));
    }

    #[tokio::test(start_paused = true)]
    async fn floor_refills_after_ttl() {
        let b = RetryBudget::new(0.0, 1, Duration::from_secs(2)).expect("valid");
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "1/s over 2 s is two retries");
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert!(b.withdraw());
    }

    #[test]
    fn rejects_bad_config() {
        assert!(RetryBudget::new(-1.0, 0, Duration::from_secs(10)).is_err());
        assert!(RetryBudget::new(f64::NAN, 0, Duration::from_secs(10)).is_err());
        assert!(RetryBudget::new(20.0, 0, Duration::from_millis(10)).is_err());
    }
}
