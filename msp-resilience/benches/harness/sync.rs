//! Shared by the breaker, limiter and bulkhead benches: drive a tower
//! service without a runtime, and run one workload on two threads at once.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower::{Service, service_fn};

/// Polls a future to completion without a runtime.
pub(crate) fn now<F: Future>(f: F) -> F::Output {
    // Ready at once on the happy path; a peer that parks on a contended
    // lock (2 threads) is polled again until it gets it.
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// One ready+call on a reused service, completed at once.
pub(crate) fn ready_call<S: Service<u64>>(svc: &mut S, n: u64) -> Result<S::Response, S::Error> {
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("service not ready"),
    }
    now(svc.call(n))
}

pub(crate) fn inner()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|n: u64| ready(Ok::<_, Infallible>(n)))
}

/// Runs `f(state, i)` for `i` in `0..iters` on each of 2 threads at once;
/// returns the slower thread's time (so the figure is per call per thread).
pub(crate) fn two_threads<T: Send + 'static>(
    iters: u64,
    make: impl Fn() -> T,
    f: fn(&mut T, u64),
) -> Duration {
    two_threads_spread(iters, make, f, |_, i| i)
}

/// Runs `f` `iters` times on each of 2 threads at once, the argument of
/// call `i` on thread `t` being `spread(t, i)`; returns the slower
/// thread's time (so the figure is per call per thread).
pub(crate) fn two_threads_spread<T: Send + 'static>(
    iters: u64,
    make: impl Fn() -> T,
    f: fn(&mut T, u64),
    spread: fn(u64, u64) -> u64,
) -> Duration {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let (mut state, barrier) = (make(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    f(&mut state, spread(t, i));
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}
