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
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder};

#[path = "harness/tokio.rs"]
mod harness;
use harness::{drive, inner, is_err, runtime, two_threads};

const TIMEOUT: Duration = Duration::from_secs(5);
/// High enough that the limiter never rejects during a run.
const RATE: u32 = 1_000_000_000;
const CONCURRENCY: usize = 64;

fn msp_stack() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    ServiceBuilder::new()
        .msp_timeout(TimeoutLayer::new(TIMEOUT))
        .msp_retry(
            RetryLayer::new(is_err as fn(&u64, Result<&u64, &BoxError>) -> bool)
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(10)).expect("backoff")),
        )
        .msp_circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::default()))
        .msp_rate_limit(RateLimitLayer::new(RateLimiter::new(
            Quota::per_second(RATE).expect("quota"),
        )))
        .msp_bulkhead(BulkheadLayer::new(
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
