//! Bulkhead, happy path (a slot is always free, the inner call succeeds at
//! once): msp (raw API and tower layer) vs tower's `ConcurrencyLimit` and
//! tower-resilience's bulkhead, on 1 thread and on 2 threads sharing one
//! bulkhead.
//!
//! `cargo bench -p msp-resilience --bench bulkhead -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer, Compartment};
use std::convert::Infallible;
use std::hint::black_box;
use tower::{Layer, Service};

#[path = "harness/sync.rs"]
mod harness;
use harness::{inner, ready_call, two_threads};

const LIMIT: u32 = 1000;

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
