//! Passive outlier detection: eject endpoints that fail real traffic.
//!
//! Every call made through an [`EndpointSet`](crate::balance::EndpointSet)
//! is reported with [`EndpointSet::record`](crate::balance::EndpointSet::record)
//! and an [`Outcome`] from an msp-core [`Classify`](msp_core::Classify)er
//! (the [discovery client](crate::client) does this for you). An endpoint is
//! ejected — left out of balancing — when either
//!
//! - it returned [`consecutive_failures`](OutlierConfigBuilder::consecutive_failures)
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
//! [`max_ejected_percent`](OutlierConfigBuilder::max_ejected_percent) of the
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
//! let outlier = OutlierConfig::builder()
//!     .consecutive_failures(3)
//!     .base_ejection_time(Duration::from_secs(30))
//!     .build()?;
//! let config = BalanceConfig::builder()
//!     .strategy(Strategy::RoundRobin)
//!     .outlier_detection(outlier)
//!     .build()?;
//! let set = EndpointSet::new(svc.clone(), config);
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

mod config;

pub use self::config::{FailureRate, OutlierConfig, OutlierConfigBuilder, OutlierConfigError};

use msp_core::Outcome;
use tokio::time::Instant;

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

impl OutlierConfig {
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
        if let Some(rate) = self.failure_rate()
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
            .consecutive_failures()
            .is_some_and(|n| s.consecutive >= n)
        {
            return Some(EjectionReason::ConsecutiveFailures);
        }
        if let Some(rate) = self.failure_rate()
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
            .is_some_and(|t| now.saturating_duration_since(t) >= self.max_ejection_time())
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
    use std::time::Duration;

    #[test]
    fn max_ejected_never_empties() {
        let c = OutlierConfig::default(); // 10 %
        assert_eq!(c.max_ejected(1), 0);
        assert_eq!(c.max_ejected(2), 1);
        assert_eq!(c.max_ejected(10), 1);
        assert_eq!(c.max_ejected(50), 5);
        let all = OutlierConfig::builder()
            .max_ejected_percent(100)
            .build()
            .expect("valid");
        assert_eq!(all.max_ejected(4), 3);
    }

    #[test]
    fn ejection_time_grows_and_caps() {
        let c = OutlierConfig::builder()
            .base_ejection_time(Duration::from_secs(10))
            .max_ejection_time(Duration::from_secs(25))
            .build()
            .expect("valid");
        assert_eq!(c.ejection_time(1), Duration::from_secs(10));
        assert_eq!(c.ejection_time(2), Duration::from_secs(20));
        assert_eq!(c.ejection_time(3), Duration::from_secs(25));
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(
            OutlierConfig::builder().consecutive_failures(0).build(),
            Err(OutlierConfigError::ZeroConsecutive)
        );
        assert!(matches!(
            OutlierConfig::builder()
                .base_ejection_time(Duration::from_secs(10))
                .max_ejection_time(Duration::from_secs(1))
                .build(),
            Err(OutlierConfigError::MaxBelowBase { .. })
        ));
        assert_eq!(
            OutlierConfig::builder().max_ejected_percent(101).build(),
            Err(OutlierConfigError::Percent(101))
        );
        let bad_rate = FailureRate {
            threshold: 0.0,
            ..FailureRate::default()
        };
        assert_eq!(
            OutlierConfig::builder().failure_rate(bad_rate).build(),
            Err(OutlierConfigError::Threshold(0.0))
        );
    }
}
