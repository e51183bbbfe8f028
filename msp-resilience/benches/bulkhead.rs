//! Bulkhead, happy path (a slot is always free, the inner call succeeds at
//! once): msp (raw API and tower layer) vs tower's `ConcurrencyLimit` and
//! tower-resilience's bulkhead, on 1 thread and on 2 threads sharing one
//! bulkhead.
//!
//! `cargo bench -p msp-resilience --bench bulkhead -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer, Compartment};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower::{Layer, Service, service_fn};

const LIMIT: u32 = 1000;

fn now<F: Future>(f: F) -> F::Output {
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

fn ready_call<S: Service<u64>>(svc: &mut S, n: u64) -> Result<S::Response, S::Error> {
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("service not ready"),
    }
    now(svc.call(n))
}

fn inner()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|n: u64| ready(Ok::<_, Infallible>(n)))
}

fn two_threads<T: Send + 'static>(
    iters: u64,
    make: impl Fn() -> T,
    f: fn(&mut T, u64),
) -> Duration {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (mut state, barrier) = (make(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    f(&mut state, i);
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

fn config() -> BulkheadConfig {
    BulkheadConfig::builder()
        .max_concurrent(LIMIT)
        .build()
        .expect("config")
}

fn tower_resilience<S>(
    inner: S,
) -> impl Service<u64, Response = u64, Future: Send> + Clone + Send + 'static
where
    S: Service<u64, Response = u64, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT as usize)
        .build()
        .expect("config")
        .layer(inner)
}

fn one_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut g = c.benchmark_group("bulkhead/1 thread");

    let comp = Compartment::new(config());
    g.bench_function("msp raw (try_acquire + drop)", |b| {
        b.iter(|| drop(black_box(comp.try_acquire().expect("free"))))
    });
    let mut ours = BulkheadLayer::new(config()).layer(inner());
    g.bench_function("msp tower layer", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            ready_call(&mut ours, i).is_ok()
        })
    });
    let mut cl = tower::limit::ConcurrencyLimit::new(inner(), LIMIT as usize);
    g.bench_function("tower ConcurrencyLimit", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            ready_call(&mut cl, i).is_ok()
        })
    });
    let mut tr = tower_resilience(inner());
    g.bench_function("tower-resilience bulkhead", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            ready_call(&mut tr, i).is_ok()
        })
    });
    g.finish();
}

fn shared_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulkhead/2 threads, shared");
    let comp = Compartment::new(config());
    g.bench_function("msp raw (try_acquire + drop)", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || comp.clone(),
                |c, _| {
                    drop(black_box(c.try_acquire().expect("free")));
                },
            )
        })
    });
    let ours = BulkheadLayer::new(config()).layer(inner());
    g.bench_function("msp tower layer", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || ours.clone(),
                |s, i| {
                    black_box(ready_call(s, i).is_ok());
                },
            )
        })
    });
    let cl = tower::limit::ConcurrencyLimit::new(inner(), LIMIT as usize);
    g.bench_function("tower ConcurrencyLimit", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || cl.clone(),
                |s, i| {
                    black_box(ready_call(s, i).is_ok());
                },
            )
        })
    });
    let tr = tower_resilience(inner());
    g.bench_function("tower-resilience bulkhead", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || tr.clone(),
                |s, i| {
                    black_box(ready_call(s, i).is_ok());
                },
            )
        })
    });
    g.finish();
}

criterion_group!(benches, one_thread, shared_two_threads);
criterion_main!(benches);
