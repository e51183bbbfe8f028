//! The Redis limiter against a real redis-server that fails: killed under
//! load, frozen past the timeout (SIGSTOP), restarted with its state wiped,
//! back after an outage. Each test runs its own private server on a free
//! port (never the shared one) and is skipped without `redis-server` unless
//! `MSP_REQUIRE_BACKENDS=1`.
//!
//! Real time is unavoidable with a real server: waits are bounded and small
//! (a recheck interval of a few hundred milliseconds), and the only time
//! bound asserted is the property itself — no check outlives the configured
//! timeout by more than a generous margin.
#![cfg(feature = "redis")]

mod common;

use common::private_redis::PrivateRedis;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use msp_resilience::rate_limit::{
    Admitted, OnRedisError, Quota, RedisRateLimitConfig, RedisRateLimiter, error::RateLimited,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Margin over the configured timeout a check may take (scheduling on a
/// loaded two-core machine), far below the "hangs" this guards against.
const SLACK: Duration = Duration::from_secs(2);

fn config(url: &str, quota: &str, on_error: OnRedisError) -> RedisRateLimitConfig {
    let mut c = RedisRateLimitConfig::new(url, quota.parse::<Quota>().expect("quota"));
    c.prefix = "msp-test:faults".to_owned();
    c.on_error = on_error;
    c.timeout = Duration::from_millis(300);
    c.recheck = Duration::from_millis(400);
    c
}

/// A limiter whose `msp_rate_limit_redis_errors_total` counter is recorded
/// by a private recorder (the handle is taken at construction).
fn metered(config: RedisRateLimitConfig) -> (RedisRateLimiter, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let limiter =
        metrics::with_local_recorder(&recorder, || RedisRateLimiter::new(config)).expect("limiter");
    (limiter, snapshotter)
}

fn redis_errors(snapshotter: &Snapshotter) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) if key.key().name() == "msp_rate_limit_redis_errors_total" => {
                Some(n)
            }
            _ => None,
        })
        .unwrap_or(0)
}

/// A fixed check of `key`, which must not outlive the timeout.
async fn bounded_check(
    limiter: &RedisRateLimiter,
    key: &str,
    timeout: Duration,
) -> Result<Admitted, RateLimited> {
    tokio::time::timeout(timeout + SLACK, limiter.check(key))
        .await
        .unwrap_or_else(|_| panic!("a check outlived the {timeout:?} timeout"))
}

/// What Redis holds for the limiter's `key`: its TAT and time to live (ms).
async fn redis_state(url: &str, key: &str) -> (Option<String>, i64) {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a direct connection to the private Redis");
    let full = format!("msp-test:faults:{key}");
    let tat: Option<String> = redis::cmd("GET")
        .arg(&full)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&full)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    (tat, ttl)
}

const TASKS: usize = 16;
/// Calls per task at most (the loops' bound).
const MAX_CALLS: usize = 5_000;
/// Calls started after the kill before the load stops (at least).
const CALLS_AFTER_KILL: usize = 600;
/// How many recheck intervals the load goes on after the kill (at least).
const OUTAGE_WINDOWS: u32 = 3;
/// The quota: a day's period, so nothing replenishes during a test.
const QUOTA: usize = 20;

/// One call of the load: whether it started after the kill, its outcome, and
/// how long it took.
type Call = (bool, Result<Admitted, RateLimited>, Duration);

struct Load {
    calls: Vec<Call>,
    redis_errors: u64,
    since_kill: Duration,
    degraded: bool,
    timeout: Duration,
    recheck: Duration,
}

impl Load {
    fn admitted(&self) -> usize {
        self.calls.iter().filter(|(_, r, _)| r.is_ok()).count()
    }

    fn after_kill(&self) -> impl Iterator<Item = &Result<Admitted, RateLimited>> {
        self.calls.iter().filter(|(a, _, _)| *a).map(|(_, r, _)| r)
    }
}

/// `TASKS` tasks check one key in a loop; once Redis has used up the quota
/// (a rejection was seen), the private Redis is SIGKILLed while they run,
/// and the load goes on for `CALLS_AFTER_KILL` more calls.
async fn kill_under_load(on_error: OnRedisError) -> Option<Load> {
    let mut redis = PrivateRedis::start()?;
    let config = config(&redis.url(), &format!("{QUOTA}/day"), on_error);
    let (timeout, recheck) = (config.timeout, config.recheck);
    let (limiter, snapshotter) = metered(config);
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let rejected = Arc::new(AtomicUsize::new(0));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (limiter, killed, stop) = (limiter.clone(), killed.clone(), stop.clone());
        let (rejected, after_kill) = (rejected.clone(), after_kill.clone());
        tasks.spawn(async move {
            let mut calls = Vec::new();
            for _ in 0..MAX_CALLS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let after = killed.load(Ordering::SeqCst);
                let started = Instant::now();
                let result = bounded_check(&limiter, "k", timeout).await;
                let took = started.elapsed();
                if after {
                    after_kill.fetch_add(1, Ordering::SeqCst);
                } else if result.is_err() {
                    rejected.fetch_add(1, Ordering::SeqCst);
                }
                calls.push((after, result, took));
                if after {
                    // Spread the load over several recheck intervals.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
            calls
        });
    }
    wait_until("Redis rejected a call", || {
        rejected.load(Ordering::SeqCst) > 0
    })
    .await;
    tokio::task::block_in_place(|| redis.kill());
    let killed_at = Instant::now();
    killed.store(true, Ordering::SeqCst);
    wait_until("the load went on after the kill", || {
        after_kill.load(Ordering::SeqCst) >= CALLS_AFTER_KILL
            && killed_at.elapsed() >= OUTAGE_WINDOWS * recheck
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let since_kill = killed_at.elapsed();
    let mut calls = Vec::new();
    while let Some(done) = tasks.join_next().await {
        calls.extend(done.expect("load task"));
    }
    assert!(
        calls.iter().filter(|(a, _, _)| *a).count() >= CALLS_AFTER_KILL,
        "the load ran after the kill"
    );
    Some(Load {
        calls,
        redis_errors: redis_errors(&snapshotter),
        since_kill,
        degraded: limiter.is_degraded(),
        timeout,
        recheck,
    })
}

/// Polls `done` every 5 ms for at most 20 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..4_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: not within 20 s");
}

/// What holds in every mode: every call returned within the timeout, the
/// limiter says it is degraded, and Redis was tried at most once per task
/// per recheck interval (plus the calls in flight at the kill) — an outage
/// does not turn every check into a failing round trip. (That Redis is tried
/// again after the interval is the "back" test's business.)
fn assert_bounded(load: &Load) {
    let slowest = load.calls.iter().map(|(_, _, took)| *took).max();
    assert!(
        slowest.is_some_and(|t| t <= load.timeout + SLACK),
        "slowest check {slowest:?} (timeout {:?})",
        load.timeout
    );
    assert!(load.degraded, "degraded after the kill");
    let windows =
        u64::try_from(load.since_kill.as_nanos() / load.recheck.as_nanos()).expect("small") + 2;
    let bound = u64::try_from(TASKS).expect("small") * windows;
    eprintln!(
        "{} calls, {} after the kill (over {:?}); {} Redis errors (expected 1..={bound}); slowest {slowest:?}",
        load.calls.len(),
        load.after_kill().count(),
        load.since_kill,
        load.redis_errors,
    );
    assert!(
        (1..=bound).contains(&load.redis_errors),
        "{} Redis errors for {} calls after the kill; 1..={bound} expected",
        load.redis_errors,
        load.after_kill().count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_under_load_fail_open_admits_every_call() {
    let Some(load) = kill_under_load(OnRedisError::FailOpen).await else {
        return;
    };
    assert_bounded(&load);
    assert!(load.after_kill().all(|r| r.is_ok()), "fail-open admits");
    assert!(load.admitted() >= QUOTA + load.after_kill().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_under_load_fail_closed_rejects_every_call() {
    let Some(load) = kill_under_load(OnRedisError::FailClosed).await else {
        return;
    };
    assert_bounded(&load);
    for r in load.after_kill() {
        let limited = r.as_ref().expect_err("fail-closed rejects");
        assert_eq!(limited.retry_after(), Duration::from_secs(1));
    }
    assert_eq!(load.admitted(), QUOTA, "only what Redis admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_under_load_local_fallback_enforces_the_quota_locally() {
    let Some(load) = kill_under_load(OnRedisError::Local).await else {
        return;
    };
    assert_bounded(&load);
    // Redis admitted the quota before the kill; the local limiter, fresh,
    // admits the quota once more and then rejects.
    assert_eq!(load.admitted(), 2 * QUOTA);
    let after = load.after_kill().filter(|r| r.is_ok()).count();
    assert!(after <= QUOTA, "{after} admitted locally after the kill");
    assert!(
        load.after_kill().any(|r| r.is_err()),
        "the local quota ran out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_after_an_outage_the_first_check_after_the_recheck_interval_counts_in_redis() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let c = config(&url, &format!("{QUOTA}/day"), OnRedisError::Local);
    let (timeout, recheck) = (c.timeout, c.recheck);
    let limiter = RedisRateLimiter::new(c.clone()).expect("limiter");
    assert!(bounded_check(&limiter, "k", timeout).await.is_ok());
    assert!(!limiter.is_degraded());

    redis.kill();
    assert!(bounded_check(&limiter, "k", timeout).await.is_ok(), "local");
    assert!(limiter.is_degraded());
    // Still down after the recheck interval: tried again, still degraded.
    tokio::time::sleep(recheck).await;
    assert!(bounded_check(&limiter, "k", timeout).await.is_ok(), "local");
    assert!(limiter.is_degraded());

    redis.restart();
    tokio::time::sleep(recheck).await;
    let admitted = bounded_check(&limiter, "k", timeout)
        .await
        .expect("admitted");
    assert!(!limiter.is_degraded(), "degraded mode left");
    // The restarted Redis started empty, so the key proves this check
    // counted there.
    assert_eq!(
        admitted.remaining(),
        u32::try_from(QUOTA - 1).expect("small")
    );
    let (tat, ttl) = redis_state(&url, "k").await;
    assert!(
        tat.is_some() && ttl > 0,
        "the key is in Redis ({tat:?}, {ttl})"
    );
    // Another limiter (another process) shares the count.
    let other = RedisRateLimiter::new(c).expect("limiter");
    let shared = bounded_check(&other, "k", timeout).await.expect("admitted");
    assert_eq!(shared.remaining(), u32::try_from(QUOTA - 2).expect("small"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_than_the_timeout_falls_back_then_recovers_after_sigcont() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let c = config(
        &redis.url(),
        &format!("{QUOTA}/day"),
        OnRedisError::FailClosed,
    );
    let (timeout, recheck) = (c.timeout, c.recheck);
    let limiter = RedisRateLimiter::new(c).expect("limiter");
    let first = bounded_check(&limiter, "k", timeout)
        .await
        .expect("admitted");
    assert_eq!(first.remaining(), u32::try_from(QUOTA - 1).expect("small"));

    redis.freeze();
    const STALLED: usize = 8;
    let stalled =
        futures_util::future::join_all((0..STALLED).map(|_| bounded_check(&limiter, "k", timeout)))
            .await;
    for r in &stalled {
        let limited = r.as_ref().expect_err("fail-closed while Redis stalls");
        assert_eq!(limited.retry_after(), Duration::from_secs(1));
    }
    assert!(limiter.is_degraded());
    // Within the recheck interval Redis is not even tried.
    assert!(bounded_check(&limiter, "k", timeout).await.is_err());

    redis.thaw();
    tokio::time::sleep(recheck).await;
    let admitted = bounded_check(&limiter, "k", timeout)
        .await
        .expect("admitted once Redis answers again");
    assert!(!limiter.is_degraded(), "degraded mode left");
    // The stalled checks' scripts were already sent: Redis ran them when it
    // resumed, so they count although the callers were rejected (documented
    // in the module). What is left: quota - first - stalled - this one.
    assert_eq!(
        admitted.remaining(),
        u32::try_from(QUOTA - 1 - STALLED - 1).expect("small")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_with_its_state_wiped_the_quota_restarts() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let c = config(&redis.url(), "3/day", OnRedisError::FailClosed);
    let timeout = c.timeout;
    let limiter = RedisRateLimiter::new(c).expect("limiter");
    let burst = |limiter: RedisRateLimiter| async move {
        let mut admitted = 0;
        for _ in 0..5 {
            admitted += usize::from(bounded_check(&limiter, "k", timeout).await.is_ok());
        }
        admitted
    };
    assert_eq!(burst(limiter.clone()).await, 3);
    let limited = bounded_check(&limiter, "k", timeout)
        .await
        .expect_err("quota used");
    assert!(
        limited.retry_after() > Duration::from_secs(3600),
        "a Redis rejection"
    );

    // No check while it is down: the limiter's connection is simply stale.
    redis.restart();
    assert_eq!(
        burst(limiter.clone()).await,
        3,
        "the wiped Redis admits a whole burst again"
    );
    assert!(!limiter.is_degraded());
}
