//! Timeout and retry, happy path (the inner call succeeds at once): msp vs
//! tower vs tower-resilience, in the same binary and run, on 1 thread and on
//! 2 threads sharing one instance (each thread drives its own clone of the
//! same service, so shared state — the retry budget — is contended).
//!
//! Every call is `ready().await` + `call().await` inside one `block_on`
//! loop on a current-thread runtime with the time driver, for every
//! contender alike.
//!
//! `cargo bench -p msp-resilience --bench retry_timeout -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use msp_core::backoff::Backoff;
use msp_resilience::retry::RetryLayer;
use msp_resilience::timeout::TimeoutLayer;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{BoxError, Layer, Service};

#[path = "harness/tokio.rs"]
mod harness;
use harness::{drive, inner, is_err, runtime, two_threads};

const TIMEOUT: Duration = Duration::from_secs(5);

// --- timeouts -------------------------------------------------------------

fn msp_timeout() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    TimeoutLayer::new(TIMEOUT).layer(inner())
}

fn tower_timeout() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    tower::timeout::TimeoutLayer::new(TIMEOUT).layer(inner())
}

fn tr_timeout() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(TIMEOUT)
        .build()
        .layer(inner())
}

// --- retries --------------------------------------------------------------

fn msp_retry() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    RetryLayer::new(is_err as fn(&u64, Result<&u64, &BoxError>) -> bool)
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(10)).expect("backoff"))
        .layer(inner())
}

fn msp_retry_no_budget()
-> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    RetryLayer::new(is_err as fn(&u64, Result<&u64, &BoxError>) -> bool)
        .max_attempts(3)
        .no_budget()
        .layer(inner())
}

/// tower's retry with the same rules: 3 attempts, a TPS budget (20 %,
/// 10/s, 10 s), retry on error.
#[derive(Clone)]
struct TowerPolicy {
    attempts: usize,
    budget: Arc<TpsBudget>,
}

impl<E> tower::retry::Policy<u64, u64, E> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.attempts > 1 && self.budget.withdraw() => {
                self.attempts -= 1;
                Some(tokio::time::sleep(Duration::from_millis(10)))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn tower_retry() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let policy = TowerPolicy {
        attempts: 3,
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
    };
    tower::retry::RetryLayer::new(policy).layer(inner())
}

fn tr_retry() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    tower_resilience::retry::RetryLayer::<u64, u64, Infallible>::builder()
        .max_attempts(3)
        .fixed_backoff(Duration::from_millis(10))
        .build()
        .layer(inner())
}

macro_rules! one {
    ($g:expr, $rt:expr, $name:expr, $svc:expr) => {{
        let mut svc = $svc;
        $g.bench_function($name, |b| {
            b.iter_custom(|iters| $rt.block_on(drive(&mut svc, iters)))
        });
    }};
}

macro_rules! two {
    ($g:expr, $name:expr, $svc:expr) => {{
        let svc = $svc;
        $g.bench_function($name, |b| b.iter_custom(|iters| two_threads(&svc, iters)));
    }};
}

fn one_thread(c: &mut Criterion) {
    let rt = runtime();
    // What a clock read costs here: retry budgets (msp's and tower's) read
    // the clock once per request. Bench builds get tokio's `test-util`
    // feature from the dev-dependencies; this shows whether that makes
    // `tokio::time::Instant::now` (used by msp) dearer than std's.
    let mut g = c.benchmark_group("clock");
    let _guard = rt.enter();
    g.bench_function("std Instant::now", |b| b.iter(std::time::Instant::now));
    g.bench_function("tokio Instant::now (test-util build)", |b| {
        b.iter(tokio::time::Instant::now)
    });
    g.finish();
    let mut g = c.benchmark_group("timeout/1 thread");
    one!(g, rt, "msp Timeout", msp_timeout());
    one!(g, rt, "tower Timeout", tower_timeout());
    one!(g, rt, "tower-resilience TimeLimiter", tr_timeout());
    g.finish();

    let mut g = c.benchmark_group("retry/1 thread");
    one!(g, rt, "msp Retry (budget)", msp_retry());
    one!(g, rt, "msp Retry (no budget)", msp_retry_no_budget());
    one!(g, rt, "tower Retry (TpsBudget)", tower_retry());
    one!(g, rt, "tower-resilience Retry", tr_retry());
    g.finish();
}

fn shared_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("timeout/2 threads, shared");
    two!(g, "msp Timeout", msp_timeout());
    two!(g, "tower Timeout", tower_timeout());
    two!(g, "tower-resilience TimeLimiter", tr_timeout());
    g.finish();

    let mut g = c.benchmark_group("retry/2 threads, shared");
    two!(g, "msp Retry (budget)", msp_retry());
    two!(g, "msp Retry (no budget)", msp_retry_no_budget());
    two!(g, "tower Retry (TpsBudget)", tower_retry());
    two!(g, "tower-resilience Retry", tr_retry());
    g.finish();
}

criterion_group!(benches, one_thread, shared_two_threads);
criterion_main!(benches);
