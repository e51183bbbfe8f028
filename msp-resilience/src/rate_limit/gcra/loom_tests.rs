//! Loom models of the GCRA cell and of the quota's sequence lock: every
//! interleaving of a few threads, each step of the real code.

use super::{Cell, Params, SharedParams};
use crate::rate_limit::Quota;
use crate::sync::model;
use loom::thread;
use std::sync::Arc;
use std::time::Duration;

const T: u64 = 1_000;
const NOW: u64 = 1_000_000;

fn params(burst: u32) -> Params {
    Params {
        t: T,
        tau: T * u64::from(burst),
        burst,
    }
}

/// `threads` threads each check once at the same instant against a cell
/// with `free` slots left of a burst of `burst`: exactly `free` admitted,
/// and the TAT moved by exactly one emission interval per admission.
fn race(burst: u32, free: u32, threads: usize) {
    model(move || {
        let p = params(burst);
        let cell = Arc::new(Cell::new());
        for _ in free..burst {
            cell.check(p, NOW).expect("the burst has room");
        }
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let cell = cell.clone();
                thread::spawn(move || cell.check(p, NOW).is_ok())
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .filter(|&ok| ok)
            .count();
        assert_eq!(admitted, free as usize, "admitted exactly the free slots");
        assert!(!cell.is_idle(NOW));
        assert!(cell.check(p, NOW).is_err(), "the burst is spent");
        assert!(
            cell.is_idle(NOW + T * u64::from(burst)),
            "the TAT moved one interval per admission"
        );
        assert!(!cell.is_idle(NOW + T * u64::from(burst) - 1));
    });
}

#[test]
fn two_threads_racing_for_the_last_slot_admit_exactly_one() {
    race(2, 1, 2);
}

#[test]
fn three_threads_racing_for_two_slots_admit_exactly_two() {
    race(2, 2, 3);
}

/// A reader loading the quota while a writer replaces it sees the old or
/// the new parameters, never a mix of the two.
#[test]
fn quota_readers_never_see_half_a_store() {
    model(|| {
        let old = Quota::with_burst(10, Duration::from_secs(1), 5).expect("valid");
        let new = Quota::with_burst(1, Duration::from_secs(1), 1).expect("valid");
        let shared = Arc::new(SharedParams::new(old));
        let writer = {
            let shared = shared.clone();
            thread::spawn(move || shared.store(new))
        };
        let seen = shared.load();
        assert!(
            seen == Params::from(old) || seen == Params::from(new),
            "torn read: {seen:?}"
        );
        assert_eq!(writer.join().expect("no panic"), Params::from(old));
        assert_eq!(shared.load(), Params::from(new));
        assert_eq!(shared.quota(), new);
    });
}
