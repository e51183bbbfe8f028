//! Circuit breaker, closed state, happy path (the inner call succeeds at
//! once): msp (raw API and tower layer) vs recloser (sync, async), failsafe
//! (sync, async) and tower-resilience, on 1 thread and on 2 threads sharing
//! one breaker.
//!
//! `cargo bench -p msp-resilience --bench breaker -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use msp_core::classify::Outcome;
use msp_resilience::circuit_breaker::{Breaker, CircuitBreakerConfig, CircuitBreakerLayer};
use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service};

#[path = "harness/sync.rs"]
mod harness;
use harness::{inner, now, ready_call, two_threads};

fn ok(n: u64) -> Result<u64, Infallible> {
    black_box(Ok(n))
}

fn msp_breaker() -> Breaker {
    Breaker::new(CircuitBreakerConfig::default())
}

fn recloser() -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .half_open_len(5)
        .open_wait(Duration::from_secs(30))
        .build()
}

fn failsafe()
-> impl failsafe::CircuitBreaker + failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static
{
    failsafe::Config::new().build()
}

fn tower_resilience<S>(
    inner: S,
) -> impl Service<u64, Response = u64, Future: Send> + Clone + Send + 'static
where
    S: Service<u64, Response = u64, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("config")
        .layer(inner)
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/1 thread");

    let b = msp_breaker();
    g.bench_function("msp raw (try_acquire + record)", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            let permit = b.try_acquire().expect("closed");
            let r = ok(i);
            permit.record(if r.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            });
            r
        })
    });
    g.bench_function("msp raw (call)", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            now(b.call(ready(ok(i))))
        })
    });
    let mut svc = CircuitBreakerLayer::new(CircuitBreakerConfig::default()).layer(inner());
    g.bench_function("msp tower layer", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            ready_call(&mut svc, i)
        })
    });

    let r = recloser();
    g.bench_function("recloser sync", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            r.call(|| ok(i))
        })
    });
    let ra = recloser::AsyncRecloser::from(recloser());
    g.bench_function("recloser async", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            now(ra.call(ready(ok(i))))
        })
    });

    let f = failsafe();
    g.bench_function("failsafe sync", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            failsafe::CircuitBreaker::call(&f, || ok(i))
        })
    });
    g.bench_function("failsafe async", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            now(failsafe::futures::CircuitBreaker::call(&f, ready(ok(i))))
        })
    });

    let mut tr = tower_resilience(inner());
    g.bench_function("tower-resilience layer", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            ready_call(&mut tr, i).is_ok()
        })
    });
    g.finish();
}

fn shared_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/2 threads, shared");

    let b = msp_breaker();
    g.bench_function("msp raw (try_acquire + record)", |bench| {
        bench.iter_custom(|iters| {
            two_threads(
                iters,
                || b.clone(),
                |b, i| {
                    let permit = b.try_acquire().expect("closed");
                    let r = ok(i);
                    permit.record(if r.is_ok() {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    });
                    black_box(r).ok();
                },
            )
        })
    });
    let svc = CircuitBreakerLayer::new(CircuitBreakerConfig::default()).layer(inner());
    g.bench_function("msp tower layer", |bench| {
        bench.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s, i| {
                    black_box(ready_call(s, i)).ok();
                },
            )
        })
    });
    let r = Arc::new(recloser());
    g.bench_function("recloser sync", |bench| {
        bench.iter_custom(|iters| {
            two_threads(
                iters,
                || r.clone(),
                |r, i| {
                    black_box(r.call(|| ok(i))).ok();
                },
            )
        })
    });
    let ra = Arc::new(recloser::AsyncRecloser::from(recloser()));
    g.bench_function("recloser async", |bench| {
        bench.iter_custom(|iters| {
            two_threads(
                iters,
                || ra.clone(),
                |r, i| {
                    black_box(now(r.call(ready(ok(i))))).ok();
                },
            )
        })
    });
    let f = failsafe();
    g.bench_function("failsafe async", |bench| {
        bench.iter_custom(|iters| {
            two_threads(
                iters,
                || f.clone(),
                |f, i| {
                    black_box(now(failsafe::futures::CircuitBreaker::call(
                        f,
                        ready(ok(i)),
                    )))
                    .ok();
                },
            )
        })
    });
    let tr = tower_resilience(inner());
    g.bench_function("tower-resilience layer", |bench| {
        bench.iter_custom(|iters| {
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
