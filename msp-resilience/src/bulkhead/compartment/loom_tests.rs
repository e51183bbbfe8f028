//! Loom models of the bulkhead's slot count: racing callers never hold
//! more slots than the limit, and every slot comes back.

use super::Compartment;
use crate::bulkhead::BulkheadConfig;
use crate::sync::{Ordering, model};
use loom::sync::atomic::AtomicUsize;
use loom::thread;
use std::sync::Arc;

fn compartment(max: u32) -> Compartment {
    Compartment::new(
        BulkheadConfig::builder()
            .max_concurrent(max)
            .build()
            .expect("config"),
    )
}

/// `threads` callers each try `rounds` times to take a slot, count
/// themselves in while they hold it and out before they drop it.
fn hammer(bulkhead: &Compartment, threads: usize, rounds: usize, max: usize) {
    let inside = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let bulkhead = bulkhead.clone();
            let inside = inside.clone();
            thread::spawn(move || {
                for _ in 0..rounds {
                    if let Ok(permit) = bulkhead.try_acquire() {
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(n <= max, "{n} calls inside a bulkhead of {max}");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no panic");
    }
    assert_eq!(bulkhead.in_flight(), 0, "every slot came back");
}

#[test]
fn three_callers_never_hold_more_than_two_slots() {
    model(|| hammer(&compartment(2), 3, 1, 2));
}

#[test]
fn two_callers_taking_and_returning_the_one_slot_never_share_it() {
    model(|| hammer(&compartment(1), 2, 2, 1));
}

/// Callers holding their slots while a third takes one: exactly the
/// limit is taken, whatever the order.
#[test]
fn racing_callers_take_exactly_the_limit() {
    model(|| {
        let bulkhead = compartment(2);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let bulkhead = bulkhead.clone();
                thread::spawn(move || bulkhead.try_acquire().ok())
            })
            .collect();
        let permits: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().expect("no panic"))
            .collect();
        assert_eq!(permits.len(), 2);
        assert_eq!(bulkhead.in_flight(), 2);
        drop(permits);
        assert_eq!(bulkhead.in_flight(), 0);
    });
}
