//! Loom models of the breaker's half-open probe permits: racing callers
//! never hold more probes than the permits, and a caller that read the
//! state word before the breaker moved on never takes a probe of a later
//! half-open state.

use super::{Breaker, Reason, Shared, State};
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::circuit_breaker::word::{GEN_SHIFT, PROBE_COUNT};
use crate::sync::{Ordering, model};
use loom::sync::atomic::AtomicUsize;
use loom::thread;
use msp_core::classify::Outcome;
use std::sync::Arc;

/// A breaker in its half-open state with `permits` probe permits.
fn half_open(permits: u32) -> Breaker {
    let breaker = Breaker::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .half_open_permits(permits)
            .build()
            .expect("config"),
    );
    let s = &*breaker.shared;
    s.transition(word(s), State::Open, Reason::ConsecutiveFailures(1));
    s.transition(word(s), State::HalfOpen, Reason::OpenElapsed);
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker
}

fn word(s: &Shared) -> u64 {
    s.word.0.load(Ordering::Acquire)
}

fn issued(s: &Shared) -> u64 {
    s.probes.0.issued.load(Ordering::Acquire) & PROBE_COUNT
}

#[test]
fn racing_callers_take_exactly_the_half_open_permits() {
    model(|| {
        let breaker = half_open(2);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.try_acquire_owned().ok())
            })
            .collect();
        let probes: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().expect("no panic"))
            .collect();
        assert_eq!(probes.len(), 2, "two permits, three callers");
        assert_eq!(issued(&breaker.shared), 2);
        drop(probes);
        assert_eq!(issued(&breaker.shared), 0, "dropped probes are given back");
    });
}

/// Callers take a probe, hold it, and give it back (drop: an ignored
/// outcome), twice each: at no point do two hold the one permit.
#[test]
fn probes_held_at_once_never_exceed_the_permits() {
    model(|| {
        let breaker = half_open(1);
        let held = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                let held = held.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        if let Ok(probe) = breaker.try_acquire_owned() {
                            let before = held.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(before, 0, "two probes held with one permit");
                            held.fetch_sub(1, Ordering::SeqCst);
                            drop(probe);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no panic");
        }
        assert_eq!(breaker.state(), State::HalfOpen);
        assert_eq!(issued(&breaker.shared), 0, "every permit came back");
    });
}

/// One probe fails (half-open → open) and the breaker goes half-open again
/// while another caller asks: that caller's probe, if any, belongs to the
/// newest half-open state, whose count matches the probes it handed out
/// (a probe counted in the wrong state would leave a permit taken for
/// ever, and the breaker half-open for ever).
#[test]
fn a_stale_caller_never_takes_a_probe_of_a_later_half_open_state() {
    model(|| {
        let breaker = half_open(1);
        let first = breaker.try_acquire_owned().expect("the one probe");
        let reopen = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                first.record(Outcome::Failure);
                let s = &*breaker.shared;
                let open = word(s);
                assert_eq!(State::from_bits(open), State::Open);
                s.transition(open, State::HalfOpen, Reason::OpenElapsed);
            })
        };
        let second = breaker.try_acquire_owned().ok();
        reopen.join().expect("no panic");
        let s = &*breaker.shared;
        let now = word(s);
        assert_eq!(State::from_bits(now), State::HalfOpen);
        let current = second
            .iter()
            .filter(|p| p.ticket.tag >> GEN_SHIFT == now >> GEN_SHIFT)
            .count() as u64;
        assert_eq!(
            current,
            second.iter().count() as u64,
            "a probe of an earlier half-open state was handed out after it ended"
        );
        assert_eq!(issued(s), current, "the permit count matches the probes");
    });
}
