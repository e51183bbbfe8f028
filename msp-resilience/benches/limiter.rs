//! Rate-limiter check, never limiting (the quota is far above the call
//! rate): msp (direct, keyed at 10,000 keys, tower layer) vs governor
//! (direct, keyed at 10,000 keys) and tower's `RateLimit`, on 1 thread and
//! on 2 threads sharing one limiter.
//!
//! `cargo bench -p msp-resilience --bench limiter -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use governor::Quota as GQuota;
use msp_resilience::rate_limit::{Clock, KeyedRateLimiter, Quota, RateLimitLayer, RateLimiter};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tower::Layer;

#[path = "harness/sync.rs"]
mod harness;
use harness::{inner, ready_call};

/// The shared two-thread runner, each thread walking the keys from its own
/// offset.
fn two_threads<T: Send + 'static>(
    iters: u64,
    make: impl Fn() -> T,
    f: fn(&mut T, u64),
) -> Duration {
    harness::two_threads_spread(iters, make, f, |t, i| {
        i.wrapping_mul(7919).wrapping_add(t * 5003)
    })
}

const KEYS: u64 = 10_000;

/// A quota that never limits: 1e9/s, burst u32::MAX.
fn ours() -> Quota {
    Quota::with_burst(1_000_000_000, Duration::from_secs(1), u32::MAX).expect("quota")
}

fn theirs() -> GQuota {
    let rate = NonZeroU32::new(1_000_000_000).expect("non-zero");
    GQuota::per_second(rate).allow_burst(NonZeroU32::MAX)
}

fn msp_keyed(clock: Clock) -> KeyedRateLimiter<u64> {
    let l = KeyedRateLimiter::builder(ours()).clock(clock).build();
    for k in 0..KEYS {
        l.check(&k).expect("never limited");
    }
    l
}

fn governor_keyed() -> governor::DefaultKeyedRateLimiter<u64> {
    let l = governor::RateLimiter::keyed(theirs());
    for k in 0..KEYS {
        l.check_key(&k).expect("never limited");
    }
    l
}

fn one_thread(c: &mut Criterion) {
    // Tokio time must be available for tower's RateLimit (it holds a Sleep)
    // and is what msp's clock reads; enter a runtime as a server would.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut g = c.benchmark_group("limiter/1 thread");

    let direct = RateLimiter::new(ours());
    g.bench_function("msp direct", |b| b.iter(|| direct.check().is_ok()));
    let fast = RateLimiter::with_clock(ours(), Clock::Fast);
    g.bench_function("msp direct (fast clock)", |b| {
        b.iter(|| fast.check().is_ok())
    });
    let gdirect = governor::RateLimiter::direct(theirs());
    g.bench_function("governor direct", |b| b.iter(|| gdirect.check().is_ok()));

    let keyed = msp_keyed(Clock::Tokio);
    g.bench_function("msp keyed (10k keys)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % KEYS;
            keyed.check(black_box(&i)).is_ok()
        })
    });
    let keyed_fast = msp_keyed(Clock::Fast);
    g.bench_function("msp keyed (10k keys, fast clock)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % KEYS;
            keyed_fast.check(black_box(&i)).is_ok()
        })
    });
    let gkeyed = governor_keyed();
    g.bench_function("governor keyed (10k keys)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % KEYS;
            gkeyed.check_key(black_box(&i)).is_ok()
        })
    });

    let mut layer = RateLimitLayer::new(RateLimiter::new(ours())).layer(inner());
    g.bench_function("msp tower layer", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            ready_call(&mut layer, i).is_ok()
        })
    });
    let mut tower_rl = tower::limit::RateLimit::new(
        inner(),
        tower::limit::rate::Rate::new(u64::MAX, Duration::from_secs(3600)),
    );
    g.bench_function("tower RateLimit", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            ready_call(&mut tower_rl, i).is_ok()
        })
    });
    g.finish();
}

fn shared_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter/2 threads, shared");
    let direct = RateLimiter::new(ours());
    g.bench_function("msp direct", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || direct.clone(),
                |l, _| {
                    black_box(l.check().is_ok());
                },
            )
        })
    });
    let fast = RateLimiter::with_clock(ours(), Clock::Fast);
    g.bench_function("msp direct (fast clock)", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || fast.clone(),
                |l, _| {
                    black_box(l.check().is_ok());
                },
            )
        })
    });
    let gdirect = Arc::new(governor::RateLimiter::direct(theirs()));
    g.bench_function("governor direct", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || gdirect.clone(),
                |l, _| {
                    black_box(l.check().is_ok());
                },
            )
        })
    });
    let keyed = msp_keyed(Clock::Tokio);
    g.bench_function("msp keyed (10k keys)", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || keyed.clone(),
                |l, i| {
                    black_box(l.check(&(i % KEYS)).is_ok());
                },
            )
        })
    });
    let keyed_fast = msp_keyed(Clock::Fast);
    g.bench_function("msp keyed (10k keys, fast clock)", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || keyed_fast.clone(),
                |l, i| {
                    black_box(l.check(&(i % KEYS)).is_ok());
                },
            )
        })
    });
    let gkeyed = Arc::new(governor_keyed());
    g.bench_function("governor keyed (10k keys)", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || gkeyed.clone(),
                |l, i| {
                    black_box(l.check_key(&(i % KEYS)).is_ok());
                },
            )
        })
    });
    g.finish();
}

criterion_group!(benches, one_thread, shared_two_threads);
criterion_main!(benches);
