//! Passive outlier detection: eject endpoints that fail real traffic.
//!
//! Every call made through an [`EndpointSet`](crate::balance::EndpointSet)
//! is reported with [`EndpointSet::record`](crate::balance::EndpointSet::record)
//! and an [`Outcome`] from an msp-core [`Classify`](msp_core::Classify)er
//! (the [discovery client](crate::client) does this for you). An endpoint is
//! ejected — left out of balancing — when either
//!
//! - it returned [`consecutive_failures`](OutlierConfig::consecutive_failures)
//!   failures in a row (default 5), or
//! - within one [`window`](FailureRate::window) it served at least
//!   [`min_requests`](FailureRate::min_requests) calls of which at least
//!   [`threshold`](FailureRate::threshold) failed (default 50 % of ≥ 20 in 10 s).
//!
//! It stays out for `base_ejection_time × n` (capped at
//! `max_ejection_time`), where `n` counts its ejections; the count resets
//! once the endpoint went `max_ejection_time` without being ejected (so a
//! flapping endpoint stays out longer and longer, a once-bad one starts
//! over). Then it returns on its own — a timer on the tokio runtime, driven
//! by `tokio::time`, so paused-time tests control it.
//!
//! **Never empties the pool:** at most
//! [`max_ejected_percent`](OutlierConfig::max_ejected_percent) of the
//! endpoints are ejected at once, but always at least one may be and never
//! all of them (Envoy's rule). This mirrors Envoy's consecutive-5xx and
//! failure-percentage detectors.
//!
//! # Example
//!
//! ```
//! use msp_core::{Instance, Outcome, ServiceName};
//! use msp_discovery::balance::{BalanceConfig, EndpointSet, Strategy};
//! use msp_discovery::outlier::OutlierConfig;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceName::new("payments")?;
//! let outlier = OutlierConfig::default()
//!     .consecutive_failures(3)
//!     .base_ejection_time(Duration::from_secs(30));
//! let set = EndpointSet::new(
//!     svc.clone(),
//!     BalanceConfig::new(Strategy::RoundRobin).outlier_detection(outlier),
//! )?;
//! set.update([Instance::parse("payments", "10.0.0.1:80")?, Instance::parse("payments", "10.0.0.2:80")?]);
//!
//! let bad = set.snapshot().endpoints()[0].clone();
//! for _ in 0..3 {
//!     set.record(bad.start(), Outcome::Failure);
//! }
//! assert!(bad.is_ejected());
//! assert!((0..10).all(|_| !set.pick(None).unwrap().same(&bad)));
//!
//! tokio::time::sleep(Duration::from_secs(31)).await; // paused clock
//! assert!(!bad.is_ejected());
//! # Ok(())
//! # }
//! ```

use msp_core::Outcome;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// Passive outlier detection settings (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    consecutive_failures: Option<u32>,
    failure_rate: Option<FailureRate>,
    #[serde(with = "humantime_serde")]
    base_ejection_time: Duration,
    #[serde(with = "humantime_serde")]
    max_ejection_time: Duration,
    max_ejected_percent: u8,
}

impl Default for OutlierConfig {
    /// 5 consecutive failures or ≥ 50 % of ≥ 20 calls in 10 s; 30 s base
    /// ejection, 5 min cap; at most 10 % ejected (at least one).
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: Some(5),
            failure_rate: Some(FailureRate::default()),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 10,
        }
    }
}

/// The failure-rate detector: at least `threshold` of at least
/// `min_requests` calls failed within one `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureRate {
    /// The failing fraction that ejects (0.0–1.0, exclusive of 0).
    pub threshold: f64,
    /// Calls needed in the window before the rate counts.
    pub min_requests: u32,
    /// The counting window (tumbling).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for FailureRate {
    /// 50 % of at least 20 calls in 10 s.
    fn default() -> Self {
        FailureRate {
            threshold: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
        }
    }
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EjectionReason {
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// Too high a failure rate in the window.
    FailureRate,
}

impl EjectionReason {
    /// A short label (`consecutive_failures`, `failure_rate`) for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionReason::ConsecutiveFailures => "consecutive_failures",
            EjectionReason::FailureRate => "failure_rate",
        }
    }
}

/// Why an [`OutlierConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidOutlierConfig {
    /// `consecutive_failures` was 0.
    #[error("outlier consecutive_failures must be at least 1")]
    ZeroConsecutive,
    /// The failure-rate threshold was not in (0, 1].
    #[error("outlier failure_rate.threshold must be in (0.0, 1.0], got {0}")]
    Threshold(f64),
    /// The failure-rate window was zero.
    #[error("outlier failure_rate.window must be greater than zero")]
    ZeroWindow,
    /// The base ejection time was zero.
    #[error("outlier base_ejection_time must be greater than zero")]
    ZeroEjection,
    /// The cap was below the base ejection time.
    #[error("outlier max_ejection_time ({max:?}) is below base_ejection_time ({base:?})")]
    MaxBelowBase {
        /// The base.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// `max_ejected_percent` was above 100.
    #[error("outlier max_ejected_percent must be at most 100, got {0}")]
    Percent(u8),
}

impl OutlierConfig {
    /// Ejects after `n` failures in a row.
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Turns the consecutive-failures detector off.
    #[must_use]
    pub fn without_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Sets the failure-rate detector.
    #[must_use]
    pub fn failure_rate(mut self, rate: FailureRate) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Turns the failure-rate detector off.
    #[must_use]
    pub fn without_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// The ejection time of a first ejection; the `n`-th lasts `n` times
    /// as long.
    #[must_use]
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        self.base_ejection_time = d;
        self
    }

    /// The longest ejection.
    #[must_use]
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        self.max_ejection_time = d;
        self
    }

    /// At most this percentage of endpoints ejected at once (one may always
    /// be, unless it is the only endpoint).
    #[must_use]
    pub fn max_ejected_percent(mut self, percent: u8) -> Self {
        self.max_ejected_percent = percent;
        self
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), InvalidOutlierConfig> {
        if self.consecutive_failures == Some(0) {
            return Err(InvalidOutlierConfig::ZeroConsecutive);
        }
        if let Some(r) = &self.failure_rate {
            if !(r.threshold > 0.0 && r.threshold <= 1.0) {
                return Err(InvalidOutlierConfig::Threshold(r.threshold));
            }
            if r.window.is_zero() {
                return Err(InvalidOutlierConfig::ZeroWindow);
            }
        }
        if self.base_ejection_time.is_zero() {
            return Err(InvalidOutlierConfig::ZeroEjection);
        }
        if self.max_ejection_time < self.base_ejection_time {
            return Err(InvalidOutlierConfig::MaxBelowBase {
                base: self.base_ejection_time,
                max: self.max_ejection_time,
            });
        }
        if self.max_ejected_percent > 100 {
            return Err(InvalidOutlierConfig::Percent(self.max_ejected_percent));
        }
        Ok(())
    }

    /// How many of `total` endpoints may be ejected at once:
    /// `max(1, ⌊total × percent / 100⌋)`, but never all of them.
    pub fn max_ejected(&self, total: usize) -> usize {
        let by_percent = total * usize::from(self.max_ejected_percent) / 100;
        by_percent.max(1).min(total.saturating_sub(1))
    }

    /// How long the `n`-th ejection (1-based) lasts.
    pub fn ejection_time(&self, n: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(n.max(1))
            .min(self.max_ejection_time)
    }

    /// Counts one outcome; returns a reason when the endpoint should go.
    pub(crate) fn observe(
        &self,
        s: &mut OutlierState,
        outcome: Outcome,
        now: Instant,
    ) -> Option<EjectionReason> {
        if s.ejected_until.is_some() {
            // Calls that were in flight when it was ejected say nothing new.
            return None;
        }
        if let Some(rate) = &self.failure_rate
            && now.saturating_duration_since(s.window_start) >= rate.window
        {
            s.window_start = now;
            s.total = 0;
            s.failures = 0;
        }
        match outcome {
            Outcome::Success => {
                s.consecutive = 0;
                s.total = s.total.saturating_add(1);
            }
            Outcome::Failure => {
                s.consecutive = s.consecutive.saturating_add(1);
                s.total = s.total.saturating_add(1);
                s.failures = s.failures.saturating_add(1);
            }
            Outcome::Ignored => return None,
        }
        if self
            .consecutive_failures
            .is_some_and(|n| s.consecutive >= n)
        {
            return Some(EjectionReason::ConsecutiveFailures);
        }
        if let Some(rate) = &self.failure_rate
            && s.total >= rate.min_requests.max(1)
            && f64::from(s.failures) >= rate.threshold * f64::from(s.total)
        {
            return Some(EjectionReason::FailureRate);
        }
        None
    }

    /// Marks the state ejected; returns when it returns.
    pub(crate) fn eject(&self, s: &mut OutlierState, now: Instant) -> Instant {
        if s.last_return
            .is_some_and(|t| now.saturating_duration_since(t) >= self.max_ejection_time)
        {
            s.ejections = 0;
        }
        s.ejections = s.ejections.saturating_add(1);
        let until = now + self.ejection_time(s.ejections);
        s.ejected_until = Some(until);
        until
    }

    pub(crate) fn should_return(&self, s: &OutlierState, now: Instant) -> bool {
        s.ejected_until.is_some_and(|t| t <= now)
    }

    pub(crate) fn on_return(&self, s: &mut OutlierState, now: Instant) {
        s.ejected_until = None;
        s.last_return = Some(now);
        s.consecutive = 0;
        s.total = 0;
        s.failures = 0;
        s.window_start = now;
    }
}

/// Per-endpoint counters, kept inside the endpoint.
#[derive(Debug)]
pub(crate) struct OutlierState {
    consecutive: u32,
    window_start: Instant,
    total: u32,
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    last_return: Option<Instant>,
}

impl OutlierState {
    pub(crate) fn new(now: Instant) -> Self {
        OutlierState {
            consecutive: 0,
            window_start: now,
            total: 0,
            failures: 0,
            ejections: 0,
            ejected_until: None,
            last_return: None,
        }
    }

    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_ejected_never_empties() {
        let c = OutlierConfig::default(); // 10 %
        assert_eq!(c.max_ejected(1), 0);
        assert_eq!(c.max_ejected(2), 1);
        assert_eq!(c.max_ejected(10), 1);
        assert_eq!(c.max_ejected(50), 5);
        let all = OutlierConfig::default().max_ejected_percent(100);
        assert_eq!(all.max_ejected(4), 3);
    }

    #[test]
    fn ejection_time_grows_and_caps() {
        let c = OutlierConfig::default()
            .base_ejection_time(Duration::from_secs(10))
            .max_ejection_time(Duration::from_secs(25));
        assert_eq!(c.ejection_time(1), Duration::from_secs(10));
        assert_eq!(c.ejection_time(2), Duration::from_secs(20));
        assert_eq!(c.ejection_time(3), Duration::from_secs(25));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(
            OutlierConfig::default()
                .consecutive_failures(0)
                .validate()
                .is_err()
        );
        assert!(
            OutlierConfig::default()
                .base_ejection_time(Duration::from_secs(10))
                .max_ejection_time(Duration::from_secs(1))
                .validate()
                .is_err()
        );
        assert!(
            OutlierConfig::default()
                .max_ejected_percent(101)
                .validate()
                .is_err()
        );
        let bad_rate = FailureRate {
            threshold: 0.0,
            ..FailureRate::default()
        };
        assert!(
            OutlierConfig::default()
                .failure_rate(bad_rate)
                .validate()
                .is_err()
        );
    }
}
