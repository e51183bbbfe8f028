//! Exponential backoff with jitter, as an iterator of delays.
//!
//! One [`Backoff`] policy serves retries, saga compensation, registry
//! re-registration and config polling. [`Backoff::iter`] yields the delay to
//! wait before each retry attempt; it ends when the attempts or the elapsed
//! budget run out.
//!
//! Jitter spreads clients that failed together so they do not retry
//! together ([AWS Architecture Blog, "Exponential Backoff and Jitter"]):
//!
//! | [`Jitter`] | delay before retry `n` (`exp = min(max_delay, initial × multiplierⁿ)`) |
//! |---|---|
//! | `None` | `exp` |
//! | `Full` | uniform in `[0, exp]` |
//! | `Equal` | `exp / 2` + uniform in `[0, exp / 2]` |
//! | `Decorrelated` | `min(max_delay, uniform in [initial, 3 × previous])` |
//!
//! Every random draw comes from an RNG you can seed ([`Backoff::iter_seeded`])
//! so tests are deterministic.
//!
//! For periodic work — heartbeats, health checks, config polling — that
//! should not run in lockstep across replicas, [`jitter`] spreads one period:
//! uniformly in `[base × (1 − fraction), base × (1 + fraction)]`. That is
//! the one meaning of a `jitter: f64` setting in msp.
//!
//! [AWS Architecture Blog, "Exponential Backoff and Jitter"]: https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
//!
//! # Example
//!
//! ```
//! use msp_core::backoff::{Backoff, Jitter};
//! use std::time::Duration;
//!
//! let policy = Backoff::builder()
//!     .initial(Duration::from_millis(100))
//!     .multiplier(2.0)
//!     .max_delay(Duration::from_secs(1))
//!     .max_attempts(5)
//!     .jitter(Jitter::None)
//!     .build()?;
//!
//! let delays: Vec<_> = policy.iter().collect();
//! assert_eq!(
//!     delays,
//!     [100, 200, 400, 800, 1000].map(Duration::from_millis)
//! );
//!
//! // The same seed gives the same jittered delays.
//! let jittered = policy.clone().with_jitter(Jitter::Full);
//! let a: Vec<_> = jittered.iter_seeded(7).collect();
//! let b: Vec<_> = jittered.iter_seeded(7).collect();
//! assert_eq!(a, b);
//!
//! // From a config file, with human-readable durations.
//! let from_yaml: Backoff = serde_json::from_str(
//!     r#"{"initial":"50ms","max_delay":"2s","max_attempts":3,"jitter":"equal"}"#,
//! )?;
//! assert_eq!(from_yaml.iter().count(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How delays are randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Plain exponential delays.
    None,
    /// Uniform in `[0, exp]` (the best spread; the default).
    #[default]
    Full,
    /// Half fixed, half random: uniform in `[exp/2, exp]`.
    Equal,
    /// Each delay drawn from `[initial, 3 × previous]`, capped at `max_delay`.
    Decorrelated,
}

/// Why a backoff policy was rejected by [`BackoffBuilder::build`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBackoff {
    /// `initial` was zero.
    #[error("backoff initial delay must be greater than zero")]
    ZeroInitial,
    /// `multiplier` was below 1 or not a finite number.
    #[error("backoff multiplier must be a finite number >= 1.0, got {0}")]
    BadMultiplier(f64),
    /// `max_delay` was smaller than `initial`.
    #[error("backoff max_delay ({max_delay:?}) is smaller than the initial delay ({initial:?})")]
    MaxBelowInitial {
        /// The initial delay.
        initial: Duration,
        /// The maximum delay.
        max_delay: Duration,
    },
}

/// An exponential backoff policy. Build one with [`Backoff::builder`] or
/// deserialize it (durations as `"100ms"`, `"2s"`).
///
/// The policy is immutable and cheap to clone; each retry loop takes its own
/// iterator from [`iter`](Backoff::iter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BackoffBuilder", into = "BackoffBuilder")]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    max_delay: Duration,
    max_elapsed: Option<Duration>,
    max_attempts: Option<u32>,
    jitter: Jitter,
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, full jitter, no attempt or time limit.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            max_elapsed: None,
            max_attempts: None,
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// Starts from the [default](Backoff::default) policy.
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder::default()
    }

    /// A fixed delay between attempts, without jitter or limits.
    pub fn constant(delay: Duration) -> Result<Self, InvalidBackoff> {
        Backoff::builder()
            .initial(delay)
            .multiplier(1.0)
            .max_delay(delay)
            .jitter(Jitter::None)
            .build()
    }

    /// Delays from a fresh RNG seeded from the thread RNG.
    pub fn iter(&self) -> BackoffIter<SmallRng> {
        self.iter_with_rng(SmallRng::from_rng(&mut rand::rng()))
    }

    /// Delays from an RNG seeded with `seed`: the same seed, the same delays.
    pub fn iter_seeded(&self, seed: u64) -> BackoffIter<SmallRng> {
        self.iter_with_rng(SmallRng::seed_from_u64(seed))
    }

    /// Delays drawn from `rng`.
    pub fn iter_with_rng<R: Rng>(&self, rng: R) -> BackoffIter<R> {
        BackoffIter {
            policy: self.clone(),
            rng,
            attempt: 0,
            elapsed: Duration::ZERO,
            prev: self.initial,
        }
    }

    /// Returns the policy with another jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first delay (before jitter).
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest single delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The most total delay the iterator hands out, if limited.
    pub fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The most delays (retry attempts) the iterator yields, if limited.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The un-jittered delay before retry `attempt` (0-based), capped at
    /// `max_delay`.
    pub fn exponential(&self, attempt: u32) -> Duration {
        let max = self.max_delay.as_secs_f64();
        let exp =
            self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(i32::MAX as u32) as i32);
        // `exp` may be +inf after many attempts; `min` brings it back under
        // max. A max near `Duration::MAX` rounds up past it as f64 seconds,
        // which `Duration` cannot hold: that is the max itself.
        Duration::try_from_secs_f64(exp.min(max).max(0.0)).unwrap_or(self.max_delay)
    }
}

/// Builder for [`Backoff`]; also its serde form.
///
/// Fields: `initial` (default 100 ms), `multiplier` (2.0), `max_delay`
/// (10 s), `max_elapsed` (none), `max_attempts` (none), `jitter` (`full`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[must_use]
pub struct BackoffBuilder {
    #[serde(with = "humantime_serde")]
    initial: Duration,
    multiplier: f64,
    #[serde(with = "humantime_serde")]
    max_delay: Duration,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    max_elapsed: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    jitter: Jitter,
}

impl Default for BackoffBuilder {
    fn default() -> Self {
        Backoff::default().into()
    }
}

impl BackoffBuilder {
    /// The first delay (must be > 0).
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// The growth factor per attempt (≥ 1.0).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }

    /// The cap on any single delay (≥ `initial`).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Stops once the delays handed out would add up to more than `d`.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = Some(d);
        self
    }

    /// Yields at most `n` delays, that is `n` retry attempts after the first
    /// call.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// The jitter (default [`Jitter::Full`]).
    pub fn jitter(mut self, j: Jitter) -> Self {
        self.jitter = j;
        self
    }

    /// Validates the policy.
    pub fn build(self) -> Result<Backoff, InvalidBackoff> {
        if self.initial.is_zero() {
            return Err(InvalidBackoff::ZeroInitial);
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(InvalidBackoff::BadMultiplier(self.multiplier));
        }
        if self.max_delay < self.initial {
            return Err(InvalidBackoff::MaxBelowInitial {
                initial: self.initial,
                max_delay: self.max_delay,
            });
        }
        Ok(Backoff {
            initial: self.initial,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            max_elapsed: self.max_elapsed,
            max_attempts: self.max_attempts,
            jitter: self.jitter,
        })
    }
}

impl TryFrom<BackoffBuilder> for Backoff {
    type Error = InvalidBackoff;
    fn try_from(b: BackoffBuilder) -> Result<Self, Self::Error> {
        b.build()
    }
}

impl From<Backoff> for BackoffBuilder {
    fn from(b: Backoff) -> Self {
        BackoffBuilder {
            initial: b.initial,
            multiplier: b.multiplier,
            max_delay: b.max_delay,
            max_elapsed: b.max_elapsed,
            max_attempts: b.max_attempts,
            jitter: b.jitter,
        }
    }
}

/// The delays of one retry loop, from [`Backoff::iter`].
#[derive(Debug, Clone)]
pub struct BackoffIter<R> {
    policy: Backoff,
    rng: R,
    attempt: u32,
    elapsed: Duration,
    prev: Duration,
}

impl<R> BackoffIter<R> {
    /// How many delays were handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The sum of the delays handed out so far.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Starts over from the first delay (after a success, for a loop that
    /// runs forever, such as a watch that reconnects).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.elapsed = Duration::ZERO;
        self.prev = self.policy.initial;
    }
}

/// `base` spread by `fraction` each way: uniformly in
/// `[base × (1 − fraction), base × (1 + fraction)]`.
///
/// The one meaning of "jitter" for periodic work in msp (heartbeats, health
/// checks, polling): `fraction = 0.1` turns a 10 s period into one between
/// 9 s and 11 s, so replicas started together drift apart while the mean
/// period stays `base`. `fraction` is clamped to `[0, 1]` (a `NaN` counts as
/// `0`); the result saturates instead of overflowing.
///
/// ```
/// use msp_core::backoff::jitter;
/// use rand::{rngs::SmallRng, SeedableRng};
/// use std::time::Duration;
///
/// let mut rng = SmallRng::seed_from_u64(7);
/// let base = Duration::from_secs(10);
/// for _ in 0..100 {
///     let d = jitter(base, 0.1, &mut rng);
///     assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
/// }
/// assert_eq!(jitter(base, 0.0, &mut rng), base);
/// ```
pub fn jitter<R: Rng + ?Sized>(base: Duration, fraction: f64, rng: &mut R) -> Duration {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    if fraction == 0.0 || base.is_zero() {
        return base;
    }
    // `fraction` is in (0, 1], so the spread is at most `base` (`min`
    // guards against f64 rounding up).
    let spread = Duration::try_from_secs_f64(base.as_secs_f64() * fraction)
        .unwrap_or(base)
        .min(base);
    uniform(rng, base - spread, base.saturating_add(spread))
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let lo = low.as_nanos().min(u64::MAX as u128) as u64;
    let hi = high.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(rng.random_range(lo..=hi))
}

impl<R: Rng> Iterator for BackoffIter<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let exp = self.policy.exponential(self.attempt);
        let delay = match self.policy.jitter {
            Jitter::None => exp,
            Jitter::Full => uniform(&mut self.rng, Duration::ZERO, exp),
            Jitter::Equal => {
                let half = exp / 2;
                half + uniform(&mut self.rng, Duration::ZERO, exp - half)
            }
            Jitter::Decorrelated => {
                let upper = self.prev.saturating_mul(3);
                uniform(&mut self.rng, self.policy.initial, upper).min(self.policy.max_delay)
            }
        };
        let total = self.elapsed.saturating_add(delay);
        if self.policy.max_elapsed.is_some_and(|max| total > max) {
            return None;
        }
        self.attempt += 1;
        self.elapsed = total;
        self.prev = delay;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `tests/proptest_parsers.rs`: a `max_delay` near
    /// `Duration::MAX` (`max_delay: 584542046090y` in a config file) is
    /// above `Duration::MAX` once converted to f64 seconds, and converting
    /// it back panicked on the first delay.
    #[test]
    fn delays_near_duration_max_do_not_panic() {
        let b = Backoff::builder()
            .initial(Duration::MAX)
            .max_delay(Duration::MAX)
            .multiplier(1.0)
            .jitter(Jitter::None)
            .build()
            .expect("valid");
        assert_eq!(b.exponential(0), Duration::MAX);
        assert_eq!(b.iter_seeded(0).next(), Some(Duration::MAX));
    }
}
