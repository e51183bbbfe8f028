//! Shared by the timeout/retry and five-layer stack benches: a
//! current-thread runtime per thread, ready+call loops, two threads sharing
//! one service.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tower::{BoxError, Service, ServiceExt, service_fn};

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

pub(crate) fn inner()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>>
+ Clone
+ Send
+ 'static {
    service_fn(|n: u64| ready(Ok::<_, Infallible>(n)))
}

/// `iters` ready+call round trips on `svc`; the elapsed time.
pub(crate) async fn drive<S: Service<u64>>(svc: &mut S, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let Ok(ready) = svc.ready().await else {
            panic!("service failed readiness")
        };
        let _ = black_box(ready.call(black_box(i)).await.is_ok());
    }
    start.elapsed()
}

/// Runs `iters` calls on each of 2 threads, each with its own runtime and
/// its own clone of `svc`; the slower thread's time (per call per thread).
pub(crate) fn two_threads<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (mut svc, barrier) = (svc.clone(), barrier.clone());
            std::thread::spawn(move || {
                let rt = runtime();
                barrier.wait();
                rt.block_on(drive(&mut svc, iters))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

pub(crate) fn is_err(_: &u64, r: Result<&u64, &BoxError>) -> bool {
    r.is_err()
}
