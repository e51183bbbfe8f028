//! The breaker's observable state: [`State`], why it changed ([`Reason`],
//! [`StateChange`]) and a [`Snapshot`] of its window.

use super::config::Mode;
use std::sync::Arc;
use std::time::Duration;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are recorded in the sliding window.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A bounded number of probe calls decide between closed and open.
    HalfOpen,
}

impl State {
    pub(super) fn from_bits(bits: u64) -> State {
        match bits & super::word::STATE_MASK {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }

    pub(super) fn to_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    /// The value of the `msp_circuit_breaker_state` gauge: 0, 1 or 2.
    pub fn as_gauge(self) -> f64 {
        self.to_bits() as f64
    }

    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// The failure rate (percent) reached the threshold.
    FailureRate(f64),
    /// The slow-call rate (percent) reached the threshold.
    SlowCallRate(f64),
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// The open duration passed.
    OpenElapsed,
    /// The half-open probes passed.
    ProbesSucceeded,
    /// The half-open probes failed (failure or slow-call rate).
    ProbesFailed,
    /// The breaker stayed half-open longer than `max_wait_in_half_open`.
    HalfOpenTimeout,
    /// [`Breaker::set_mode`](super::Breaker::set_mode) was called.
    ModeChanged(Mode),
}

/// A state transition, sent on the channel of [`Breaker::subscribe`](super::Breaker::subscribe).
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The breaker's configured name.
    pub breaker: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// How long the breaker stays open, for transitions to [`State::Open`]
    /// in [`Mode::Normal`] or [`Mode::MetricsOnly`].
    pub open_for: Option<Duration>,
}

/// Figures of the sliding window, from [`Breaker::snapshot`](super::Breaker::snapshot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// The mode.
    pub mode: Mode,
    /// Calls recorded in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Failures in a row, right now.
    pub consecutive_failures: u32,
    /// Trips since the breaker last closed.
    pub trips: u32,
}

impl Snapshot {
    /// Failure rate in percent (0 with no calls).
    pub fn failure_rate(&self) -> f64 {
        rate(self.failures, self.calls)
    }

    /// Slow-call rate in percent (0 with no calls).
    pub fn slow_call_rate(&self) -> f64 {
        rate(self.slow_calls, self.calls)
    }
}

pub(super) fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
