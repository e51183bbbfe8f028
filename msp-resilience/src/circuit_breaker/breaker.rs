//! The shared breaker state and its non-tower API.

use super::config::{CircuitBreakerConfig, Mode, SlidingWindow};
use super::error::{CallError, CircuitOpen};
use super::permit::{OwnedPermit, Permit};
use super::state::rate;
pub use super::state::{Reason, Snapshot, State, StateChange};
use super::window::{Counts, Padded, Window};
use super::word::{FAST_MASK, GEN_SHIFT, Kind, PROBE_COUNT, Ticket, mode_of, pack, probe_tag};
use crate::sync::{AtomicU32, AtomicU64, Mutex, Ordering};
use msp_core::classify::Outcome;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

struct Metrics {
    state: metrics::Gauge,
    success: metrics::Counter,
    failure: metrics::Counter,
    ignored: metrics::Counter,
    rejected: metrics::Counter,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let name = name.to_owned();
        let calls = |outcome: &'static str| metrics::counter!("msp_circuit_breaker_calls_total", "breaker" => name.clone(), "outcome" => outcome);
        Metrics {
            state: metrics::gauge!("msp_circuit_breaker_state", "breaker" => name.clone()),
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: metrics::counter!("msp_circuit_breaker_rejected_total", "breaker" => name.clone()),
        }
    }

    #[inline]
    fn call(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.success.increment(1),
            Outcome::Failure => self.failure.increment(1),
            Outcome::Ignored => self.ignored.increment(1),
        }
    }
}

struct Probes {
    /// Probe permits handed out: the generation of the half-open state
    /// they belong to (low 32 bits of it) in the high half, the count in the
    /// low half. A caller that read the state word before the breaker moved
    /// on cannot take or give back a permit of a later half-open state.
    issued: AtomicU64,
    completed: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

struct Transitions {
    trips: u32,
}

pub(crate) struct Shared {
    word: Padded<AtomicU64>,
    window: Window,
    consecutive: Padded<AtomicU32>,
    probes: Padded<Probes>,
    open_until: AtomicU64,
    half_open_since: AtomicU64,
    transitions: Mutex<Transitions>,
    base: Instant,
    clock_per_call: bool,
    minimum: u64,
    name: Arc<str>,
    config: CircuitBreakerConfig,
    events: broadcast::Sender<StateChange>,
    metrics: Metrics,
}

/// A circuit breaker: one state shared by every clone.
///
/// The [`CircuitBreakerLayer`](super::CircuitBreakerLayer) wraps services
/// with it; non-tower code uses [`try_acquire`](Breaker::try_acquire) (a
/// permit to record an outcome on) or [`call`](Breaker::call).
///
/// Cloning is cheap (an `Arc`); clones share the state.
///
/// # Example
///
/// ```
/// use msp_core::classify::Outcome;
/// use msp_resilience::circuit_breaker::{Breaker, CircuitBreakerConfig, State};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = Breaker::new(
///     CircuitBreakerConfig::builder().consecutive_failures(2).build()?,
/// );
///
/// for _ in 0..2 {
///     let permit = breaker.try_acquire()?;
///     permit.record(Outcome::Failure);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// assert!(breaker.try_acquire().is_err());
///
/// // Or wrap a future: `Err` is a failure, `Ok` a success.
/// let res = breaker.call(async { Ok::<_, std::io::Error>(1) }).await;
/// assert!(res.is_err()); // still open
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .field("mode", &self.mode())
            .finish()
    }
}

impl Breaker {
    /// A breaker with `config`, closed (or in the configured mode).
    pub fn new(config: CircuitBreakerConfig) -> Self {
        let window = match config.window() {
            SlidingWindow::Count { size } => Window::count(size),
            SlidingWindow::Time { duration } => Window::time(msp_core::time::ceil_secs(duration)),
        };
        let mode = config.mode();
        let state = if mode == Mode::ForceOpen {
            State::Open
        } else {
            State::Closed
        };
        let metrics = Metrics::new(config.name());
        metrics.state.set(state.as_gauge());
        let shared = Shared {
            word: Padded(AtomicU64::new(pack(state, mode, 0))),
            clock_per_call: config.slow_call_duration().is_some(),
            window,
            consecutive: Padded(AtomicU32::new(0)),
            probes: Padded(Probes {
                issued: AtomicU64::new(0),
                completed: AtomicU32::new(0),
                failures: AtomicU32::new(0),
                slow: AtomicU32::new(0),
            }),
            open_until: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            transitions: Mutex::new(Transitions { trips: 0 }),
            base: Instant::now(),
            minimum: u64::from(config.minimum_calls()),
            name: Arc::from(config.name()),
            events: broadcast::channel(64).0,
            metrics,
            config,
        };
        Breaker {
            shared: Arc::new(shared),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::from_bits(self.shared.word.0.load(Ordering::Acquire))
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        mode_of(self.shared.word.0.load(Ordering::Acquire))
    }

    /// Changes the mode. Going back to [`Mode::Normal`] (or to any mode)
    /// starts closed with an empty window, except [`Mode::ForceOpen`] which
    /// is reported as [`State::Open`].
    pub fn set_mode(&self, mode: Mode) {
        self.shared.set_mode(mode);
    }

    /// Receives every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.shared.events.subscribe()
    }

    /// The window's figures right now.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.shared;
        let word = s.word.0.load(Ordering::Acquire);
        let Counts {
            calls,
            failures,
            slow,
        } = s.window.counts(s.now_secs());
        let trips = s
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trips;
        Snapshot {
            state: State::from_bits(word),
            mode: mode_of(word),
            calls,
            failures,
            slow_calls: slow,
            consecutive_failures: s.consecutive.0.load(Ordering::Relaxed),
            trips,
        }
    }

    /// Asks to make a call. In the closed state this is one atomic load.
    ///
    /// Record the call's outcome on the returned permit; a permit dropped
    /// without an outcome counts as [`Outcome::Ignored`] (and gives a
    /// half-open probe permit back).
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        let ticket = self.shared.acquire()?;
        Ok(Permit {
            shared: &self.shared,
            ticket,
        })
    }

    /// Like [`try_acquire`](Breaker::try_acquire), with a permit that owns
    /// a handle on the breaker (for futures that must be `'static`).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, CircuitOpen> {
        let ticket = self.shared.acquire()?;
        Ok(OwnedPermit {
            shared: Some(self.shared.clone()),
            ticket,
        })
    }

    /// Runs `fut` if the breaker admits it; `Ok` records a success, `Err` a
    /// failure.
    pub async fn call<F, T, E>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        match fut.await {
            Ok(v) => {
                permit.record(Outcome::Success);
                Ok(v)
            }
            Err(e) => {
                permit.record(Outcome::Failure);
                Err(CallError::Inner(e))
            }
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("name", &self.name).finish()
    }
}

impl Shared {
    fn now_nanos(&self) -> u64 {
        let d = Instant::now().saturating_duration_since(self.base);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn now_secs(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_secs()
    }

    #[inline]
    fn start(&self) -> u64 {
        if self.clock_per_call {
            self.now_nanos().saturating_add(1)
        } else {
            0
        }
    }

    #[inline]
    fn acquire(&self) -> Result<Ticket, CircuitOpen> {
        let word = self.word.0.load(Ordering::Acquire);
        if word & FAST_MASK == 0 {
            return Ok(Ticket::new(word, Kind::Closed, self.start()));
        }
        self.acquire_slow(word)
    }

    #[cold]
    fn acquire_slow(&self, mut word: u64) -> Result<Ticket, CircuitOpen> {
        // Each pass either returns or follows a transition; transitions
        // that could loop (open → half-open → open) need time to pass.
        for _ in 0..4 {
            let ticket = |kind| Ticket::new(word, kind, self.start());
            let mode = mode_of(word);
            match mode {
                Mode::Disabled => return Ok(ticket(Kind::Untracked)),
                Mode::ForceClosed => return Ok(ticket(Kind::Counted)),
                Mode::ForceOpen => return Err(self.reject(None)),
                Mode::Normal | Mode::MetricsOnly => {}
            }
            let observe_only = mode == Mode::MetricsOnly;
            match State::from_bits(word) {
                State::Closed => return Ok(ticket(Kind::Closed)),
                State::Open => {
                    let now = self.now_nanos();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        if observe_only {
                            return Ok(ticket(Kind::Counted));
                        }
                        return Err(self.reject(Some(Duration::from_nanos(until - now))));
                    }
                    self.transition(word, State::HalfOpen, Reason::OpenElapsed);
                }
                State::HalfOpen => {
                    if let Some(max) = self.config.max_wait_in_half_open() {
                        let since = self.half_open_since.load(Ordering::Acquire);
                        if self.now_nanos().saturating_sub(since) >= duration_nanos(max) {
                            self.transition(word, State::Open, Reason::HalfOpenTimeout);
                            word = self.word.0.load(Ordering::Acquire);
                            continue;
                        }
                    }
                    let permits = u64::from(self.config.half_open_permits());
                    let tag = probe_tag(word);
                    let taken = self.probes.0.issued.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |n| (n & !PROBE_COUNT == tag && n & PROBE_COUNT < permits).then_some(n + 1),
                    );
                    match taken {
                        Ok(_) => return Ok(ticket(Kind::Probe)),
                        // The counter belongs to another half-open state:
                        // the state moved on since `word` was read.
                        Err(n) if n & !PROBE_COUNT != tag => {
                            word = self.word.0.load(Ordering::Acquire);
                            continue;
                        }
                        Err(_) => {}
                    }
                    if observe_only {
                        return Ok(ticket(Kind::Counted));
                    }
                    return Err(self.reject(None));
                }
            }
            word = self.word.0.load(Ordering::Acquire);
        }
        Err(self.reject(None))
    }

    fn reject(&self, retry_after: Option<Duration>) -> CircuitOpen {
        self.metrics.rejected.increment(1);
        CircuitOpen::new(retry_after)
    }

    #[inline]
    pub(super) fn record(&self, ticket: &Ticket, outcome: Outcome) {
        match ticket.kind() {
            Kind::Closed => {
                self.metrics.call(outcome);
                if outcome != Outcome::Ignored {
                    self.record_closed(ticket, outcome == Outcome::Failure);
                }
            }
            Kind::Probe => {
                self.metrics.call(outcome);
                self.record_probe(ticket, outcome);
            }
            Kind::Counted => self.metrics.call(outcome),
            Kind::Untracked => {}
        }
    }

    #[inline]
    fn is_slow(&self, start: u64) -> bool {
        match self.config.slow_call_duration() {
            Some(limit) if start != 0 => {
                self.now_nanos().saturating_sub(start - 1) >= duration_nanos(limit)
            }
            _ => false,
        }
    }

    #[inline]
    fn record_closed(&self, ticket: &Ticket, failure: bool) {
        let word = self.word.0.load(Ordering::Acquire);
        if !ticket.current(word) {
            return; // admitted before a transition: not part of this window
        }
        let slow = self.is_slow(ticket.start);
        if failure {
            let n = self.consecutive.0.fetch_add(1, Ordering::Relaxed) + 1;
            if self
                .config
                .consecutive_failures()
                .is_some_and(|max| n >= max)
            {
                self.transition(word, State::Open, Reason::ConsecutiveFailures(n));
                return;
            }
        } else if self.consecutive.0.load(Ordering::Relaxed) != 0 {
            self.consecutive.0.store(0, Ordering::Relaxed);
        }
        let second = if self.window.is_time() {
            self.now_secs()
        } else {
            0
        };
        if let Some(counts) = self.window.record(second, failure, slow, self.minimum) {
            self.evaluate_closed(word, counts);
        }
    }

    #[cold]
    fn evaluate_closed(&self, word: u64, c: Counts) {
        if c.calls < self.minimum {
            return;
        }
        let failure_rate = rate(c.failures, c.calls);
        if c.failures > 0 && failure_rate >= self.config.failure_rate() {
            self.transition(word, State::Open, Reason::FailureRate(failure_rate));
            return;
        }
        let slow_rate = rate(c.slow, c.calls);
        if c.slow > 0 && slow_rate >= self.config.slow_call_rate() {
            self.transition(word, State::Open, Reason::SlowCallRate(slow_rate));
        }
    }

    fn record_probe(&self, ticket: &Ticket, outcome: Outcome) {
        let probes = &self.probes.0;
        let word = self.word.0.load(Ordering::Acquire);
        if !ticket.current(word) {
            return;
        }
        if outcome == Outcome::Ignored {
            self.give_back_probe(ticket);
            return;
        }
        if outcome == Outcome::Failure {
            probes.failures.fetch_add(1, Ordering::AcqRel);
        }
        if self.is_slow(ticket.start) {
            probes.slow.fetch_add(1, Ordering::AcqRel);
        }
        let permits = self.config.half_open_permits();
        if probes.completed.fetch_add(1, Ordering::AcqRel) + 1 < permits {
            return;
        }
        let failures = u64::from(probes.failures.load(Ordering::Acquire));
        let slow = u64::from(probes.slow.load(Ordering::Acquire));
        let calls = u64::from(permits);
        let failed = (failures > 0 && rate(failures, calls) >= self.config.failure_rate())
            || (slow > 0 && rate(slow, calls) >= self.config.slow_call_rate());
        if failed {
            self.transition(word, State::Open, Reason::ProbesFailed);
        } else {
            self.transition(word, State::Closed, Reason::ProbesSucceeded);
        }
    }

    /// Gives a probe permit back so another call can probe, unless the
    /// breaker left the probe's half-open state meanwhile.
    fn give_back_probe(&self, ticket: &Ticket) {
        let tag = probe_tag(ticket.tag);
        let _ = self
            .probes
            .0
            .issued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n & !PROBE_COUNT == tag && n & PROBE_COUNT > 0).then_some(n - 1)
            });
    }

    /// Moves from the state encoded in `expected` to `to`, unless another
    /// thread changed the state first.
    #[cold]
    fn transition(&self, expected: u64, to: State, reason: Reason) {
        let mut t = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.word.0.load(Ordering::Acquire);
        if current != expected {
            return;
        }
        let from = State::from_bits(current);
        let mode = mode_of(current);
        let generation = (current >> GEN_SHIFT).wrapping_add(1);
        let mut open_for = None;
        match to {
            State::Open => {
                let d = self.config.open_duration(t.trips);
                t.trips = t.trips.saturating_add(1);
                self.open_until.store(
                    self.now_nanos().saturating_add(duration_nanos(d)),
                    Ordering::Release,
                );
                open_for = Some(d);
            }
            State::HalfOpen => {
                let p = &self.probes.0;
                p.issued
                    .store(probe_tag(generation << GEN_SHIFT), Ordering::Release);
                p.completed.store(0, Ordering::Release);
                p.failures.store(0, Ordering::Release);
                p.slow.store(0, Ordering::Release);
                self.half_open_since
                    .store(self.now_nanos(), Ordering::Release);
            }
            State::Closed => {
                t.trips = 0;
            }
        }
        self.window.reset();
        self.consecutive.0.store(0, Ordering::Relaxed);
        self.word
            .0
            .store(pack(to, mode, generation), Ordering::Release);
        drop(t);
        self.announce(from, to, reason, open_for);
    }

    fn set_mode(&self, mode: Mode) {
        let mut t = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.word.0.load(Ordering::Acquire);
        let from = State::from_bits(current);
        let to = if mode == Mode::ForceOpen {
            State::Open
        } else {
            State::Closed
        };
        t.trips = 0;
        self.window.reset();
        self.consecutive.0.store(0, Ordering::Relaxed);
        let generation = (current >> GEN_SHIFT).wrapping_add(1);
        self.word
            .0
            .store(pack(to, mode, generation), Ordering::Release);
        drop(t);
        if from != to || mode_of(current) != mode {
            self.announce(from, to, Reason::ModeChanged(mode), None);
        }
    }

    fn announce(&self, from: State, to: State, reason: Reason, open_for: Option<Duration>) {
        self.metrics.state.set(to.as_gauge());
        tracing::info!(
            breaker = %self.name,
            from = from.as_str(),
            to = to.as_str(),
            ?reason,
            "circuit breaker state change"
        );
        // No receiver is not an error: events are optional.
        let _ = self.events.send(StateChange {
            breaker: self.name.clone(),
            from,
            to,
            reason,
            open_for,
        });
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(all(test, msp_loom))]
mod loom_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A caller that read the half-open state word, then stalled while the
    /// breaker re-opened and went half-open again, must not take (and then
    /// never give back) a probe permit of the new half-open state: with one
    /// permit the breaker would stay half-open for ever.
    #[tokio::test(start_paused = true)]
    async fn a_stale_state_word_does_not_take_a_later_probe_permit() {
        let breaker = Breaker::new(
            CircuitBreakerConfig::builder()
                .consecutive_failures(1)
                .half_open_permits(1)
                .open_duration(secs(1))
                .open_duration_multiplier(1.0)
                .max_open_duration(secs(1))
                .build()
                .expect("config"),
        );
        let s = &*breaker.shared;
        breaker
            .try_acquire()
            .expect("closed")
            .record(Outcome::Failure);
        tokio::time::advance(secs(1)).await;
        let probe = breaker.try_acquire().expect("first probe");
        let stale = s.word.0.load(Ordering::Acquire);
        assert_eq!(State::from_bits(stale), State::HalfOpen);
        probe.record(Outcome::Failure);
        assert_eq!(breaker.state(), State::Open);
        tokio::time::advance(secs(1)).await;
        // Open → half-open without handing out the probe yet.
        s.transition(
            s.word.0.load(Ordering::Acquire),
            State::HalfOpen,
            Reason::OpenElapsed,
        );
        // The stalled caller goes on with the old word.
        let ticket = s.acquire_slow(stale).expect("admitted in the new state");
        s.record(&ticket, Outcome::Success);
        assert_eq!(
            breaker.state(),
            State::Closed,
            "the probe counted in the current half-open state"
        );
    }

    /// A probe permit given back after the breaker left its half-open
    /// state must not be taken from a later half-open state's count.
    #[tokio::test(start_paused = true)]
    async fn a_late_give_back_does_not_touch_a_later_probe_count() {
        let breaker = Breaker::new(
            CircuitBreakerConfig::builder()
                .consecutive_failures(1)
                .half_open_permits(1)
                .open_duration(secs(1))
                .open_duration_multiplier(1.0)
                .max_open_duration(secs(1))
                .build()
                .expect("config"),
        );
        let s = &*breaker.shared;
        breaker
            .try_acquire()
            .expect("closed")
            .record(Outcome::Failure);
        tokio::time::advance(secs(1)).await;
        let probe = breaker.try_acquire_owned().expect("first probe");
        let old = probe.ticket;
        probe.record(Outcome::Failure);
        tokio::time::advance(secs(1)).await;
        let current = breaker.try_acquire_owned().expect("probe of the new state");
        // The old probe's give-back arrives now (as if it had passed its
        // generation check just before the transitions).
        s.give_back_probe(&old);
        assert!(breaker.try_acquire().is_err(), "still one probe at most");
        current.record(Outcome::Success);
        assert_eq!(breaker.state(), State::Closed);
    }
}
