//! A five-layer stack — timeout + retry + circuit breaker + rate limiter +
//! bulkhead, outermost first — built from msp and from tower-resilience,
//! happy path (the inner call succeeds at once, nothing is rejected), on 1
//! thread and on 2 threads sharing one stack (each thread drives its own
//! clone, so breaker, limiter, bulkhead and retry budget are contended).
//!
//! Every call is `ready().await` + `call().await` inside one `block_on`
//! loop on a current-thread runtime with the time driver, for both stacks.
//!
//! `cargo bench -p msp-resilience --bench stack -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use msp_core::backoff::Backoff;
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use msp_resilience::rate_limit::{Quota, RateLimitLayer, RateLimiter};
use msp_resilience::retry::RetryLayer;
use msp_resilience::{ResilienceBuilderExt, TimeoutLayer};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const TIMEOUT: Duration = Duration::from_secs(5);
/// High enough that the limiter never rejects during a run.
const RATE: u32 = 1_000_000_000;
const CONCURRENCY: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn inner()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>>
+ Clone
+ Send
+ 'static {
    service_fn(|n: u64| ready(Ok::<_, Infallible>(n)))
}

async fn drive<S: Service<u64>>(svc: &mut S, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let Ok(ready) = svc.ready().await else {
            panic!("service failed readiness")
        };
        let _ = black_box(ready.call(black_box(i)).await.is_ok());
    }
    start.elapsed()
}

fn two_threads<S>(svc: &S, iters: u64) -> Duration
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

fn is_err(_: &u64, r: Result<&u64, &BoxError>) -> bool {
    r.is_err()
}

fn msp_stack() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    ServiceBuilder::new()
        .timeout_with(TimeoutLayer::new(TIMEOUT))
        .retry_with(
            RetryLayer::new(is_err as fn(&u64, Result<&u64, &BoxError>) -> bool)
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(10)).expect("backoff")),
        )
        .circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
        .rate_limit_with(RateLimitLayer::new(RateLimiter::new(
            Quota::per_second(RATE).expect("quota"),
        )))
        .bulkhead(BulkheadLayer::new(
            BulkheadConfig::builder()
                .max_concurrent(CONCURRENCY as u32)
                .build()
                .expect("config"),
        ))
        .service(inner())
}

type TrInnerError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::ratelimiter::RateLimiterServiceError<
        tower_resilience::bulkhead::BulkheadServiceError<Infallible>,
    >,
>;

fn tr_stack() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    ServiceBuilder::new()
        .layer(
            tower_resilience::timelimiter::TimeLimiterLayer::builder()
                .timeout_duration(TIMEOUT)
                .build(),
        )
        .layer(
            tower_resilience::retry::RetryLayer::<u64, u64, TrInnerError>::builder()
                .max_attempts(3)
                .fixed_backoff(Duration::from_millis(10))
                .build(),
        )
        .layer(
            tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .build()
                .expect("config"),
        )
        .layer(
            tower_resilience::ratelimiter::RateLimiterLayer::builder()
                .limit_for_period(RATE as usize)
                .refresh_period(Duration::from_secs(1))
                .build()
                .expect("config"),
        )
        .layer(
            tower_resilience::bulkhead::BulkheadLayer::builder()
                .max_concurrent_calls(CONCURRENCY)
                .build()
                .expect("config"),
        )
        .service(inner())
}

fn one_thread(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("five-layer stack/1 thread");
    let mut msp = msp_stack();
    g.bench_function("msp", |b| {
        b.iter_custom(|iters| rt.block_on(drive(&mut msp, iters)))
    });
    let mut tr = tr_stack();
    g.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| rt.block_on(drive(&mut tr, iters)))
    });
    g.finish();
}

fn shared_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("five-layer stack/2 threads, shared");
    let msp = msp_stack();
    g.bench_function("msp", |b| b.iter_custom(|iters| two_threads(&msp, iters)));
    let tr = tr_stack();
    g.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| two_threads(&tr, iters))
    });
    g.finish();
}

criterion_group!(benches, one_thread, shared_two_threads);
criterion_main!(benches);
