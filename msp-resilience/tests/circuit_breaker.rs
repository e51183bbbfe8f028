//! Behaviour of the circuit breaker: thresholds, half-open probes, open-time
//! backoff, modes and events. Time is paused in every time-based test.

use msp_core::classify::{HttpClassifier, Outcome};
use msp_resilience::circuit_breaker::error::CircuitOpen;
use msp_resilience::circuit_breaker::{
    Breaker, CircuitBreakerConfig, CircuitBreakerConfigBuilder, CircuitBreakerLayer, Mode, Reason,
    State,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tokio::time::advance;
use tower::{Service, ServiceExt, service_fn};

fn build(b: CircuitBreakerConfigBuilder) -> Breaker {
    Breaker::new(b.build().expect("valid config"))
}

fn record(breaker: &Breaker, outcome: Outcome) {
    breaker.try_acquire().expect("admitted").record(outcome);
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn opens_exactly_at_failure_rate_once_minimum_calls_reached() {
    // 9 failures stay below the minimum of 10 calls; the 10th call (a
    // success) brings the window to 10 calls at 90 % and opens.
    let b = build(
        CircuitBreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .failure_rate(50.0),
    );
    for i in 0..9 {
        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed, "opened after {} calls", i + 1);
    }
    record(&b, Outcome::Success);
    assert_eq!(b.state(), State::Open);

    // 4 failures in 10 calls (40 %) stay closed; the 5th failure in the
    // window (50 %) opens, not earlier.
    let b = build(
        CircuitBreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .failure_rate(50.0),
    );
    for _ in 0..6 {
        record(&b, Outcome::Success);
    }
    for _ in 0..4 {
        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
    }
    assert_eq!(b.snapshot().calls, 10);
    assert_eq!(b.snapshot().failures, 4);
    // The window slides: the 11th call pushes out a success.
    record(&b, Outcome::Failure);
    let err = b.try_acquire().expect_err("open");
    assert_eq!(err.retry_after(), Some(secs(30)));
}

#[tokio::test(start_paused = true)]
async fn sliding_count_window_forgets_old_failures() {
    let b = build(
        CircuitBreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .failure_rate(50.0),
    );
    for _ in 0..4 {
        record(&b, Outcome::Failure);
    }
    for _ in 0..10 {
        record(&b, Outcome::Success);
    }
    let snap = b.snapshot();
    assert_eq!((snap.calls, snap.failures), (10, 0));
    for _ in 0..4 {
        record(&b, Outcome::Failure);
    }
    assert_eq!(b.state(), State::Closed, "4 of 10 = 40 %");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open, "5 of 10 = 50 %");
}

#[tokio::test(start_paused = true)]
async fn time_window_expires_old_calls() {
    let cfg = || {
        CircuitBreakerConfig::builder()
            .time_window(secs(10))
            .minimum_calls(4)
            .failure_rate(50.0)
    };
    // Without time passing, 3 failures + 1 success = 75 %: open.
    let b = build(cfg());
    for _ in 0..3 {
        record(&b, Outcome::Failure);
    }
    record(&b, Outcome::Success);
    assert_eq!(b.state(), State::Open);

    // The same failures 11 s earlier have left the window.
    let b = build(cfg());
    for _ in 0..3 {
        record(&b, Outcome::Failure);
    }
    advance(secs(11)).await;
    for _ in 0..3 {
        record(&b, Outcome::Success);
    }
    record(&b, Outcome::Failure);
    assert_eq!(b.snapshot().calls, 4);
    assert_eq!(b.state(), State::Closed, "1 of 4 = 25 %");
    advance(secs(3)).await;
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Closed, "2 of 5 = 40 %");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open, "3 of 6 = 50 %");
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_the_breaker() {
    let b = build(
        CircuitBreakerConfig::builder()
            .count_window(10)
            .minimum_calls(4)
            .slow_call_duration(secs(1))
            .slow_call_rate(50.0),
    );
    let call = |delay: u64| {
        let b = b.clone();
        async move {
            b.call(async {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Ok::<_, std::io::Error>(())
            })
            .await
        }
    };
    call(10).await.expect("fast");
    call(1500).await.expect("slow but successful");
    call(999).await.expect("just under the limit");
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().slow_calls, 1);
    call(1000).await.expect("exactly the limit is slow");
    assert_eq!(b.state(), State::Open, "2 slow of 4 = 50 %");
    let mut events = b.subscribe();
    let _ = events.try_recv();
    assert!(call(1).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_regardless_of_minimum() {
    let b = build(
        CircuitBreakerConfig::builder()
            .minimum_calls(100)
            .consecutive_failures(3),
    );
    let mut events = b.subscribe();
    record(&b, Outcome::Failure);
    record(&b, Outcome::Failure);
    record(&b, Outcome::Success);
    record(&b, Outcome::Failure);
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Closed);
    // Ignored outcomes neither count nor reset the streak.
    record(&b, Outcome::Ignored);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    let ev = events.try_recv().expect("event");
    assert_eq!(ev.reason, Reason::ConsecutiveFailures(3));
}

fn trip_on_one_failure(permits: u32) -> Breaker {
    build(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .half_open_permits(permits)
            .open_duration(secs(1))
            .open_duration_multiplier(1.0)
            .max_open_duration(secs(1)),
    )
}

#[test]
fn half_open_never_admits_more_probes_than_configured_under_64_threads() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let b = trip_on_one_failure(3);
    record(&b, Outcome::Failure);
    for round in 0..20 {
        assert_eq!(b.state(), State::Open);
        rt.block_on(advance(secs(1)));
        let barrier = Arc::new(Barrier::new(64));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (b, barrier, handle) = (b.clone(), barrier.clone(), rt.handle().clone());
                std::thread::spawn(move || {
                    let _clock = handle.enter();
                    barrier.wait();
                    b.try_acquire_owned().ok()
                })
            })
            .collect();
        let permits: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(permits.len(), 3, "round {round}");
        assert_eq!(b.state(), State::HalfOpen);
        // All probes fail: open again.
        for p in permits {
            p.record(Outcome::Failure);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_only_permitted_probes_through_the_service() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .half_open_permits(2)
            .open_duration(secs(5))
            .build()
            .expect("config"),
    );
    let breaker = layer.breaker().clone();
    let entered = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn({
            let (entered, gate) = (entered.clone(), gate.clone());
            move |fail: bool| {
                let (entered, gate) = (entered.clone(), gate.clone());
                async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    if fail { Err("boom".to_owned()) } else { Ok(()) }
                }
            }
        }));
    gate.add_permits(1);
    assert!(svc.clone().oneshot(true).await.is_err());
    assert_eq!(breaker.state(), State::Open);
    advance(secs(5)).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let svc = svc.clone();
        tasks.spawn(async move { svc.oneshot(false).await });
    }
    // Let every task reach the breaker.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        entered.load(Ordering::SeqCst),
        1 + 2,
        "only 2 probes reach the service"
    );
    gate.add_permits(64);
    let mut rejected = 0;
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res.expect("task") {
            assert!(e.downcast_ref::<CircuitOpen>().is_some());
            rejected += 1;
        }
    }
    assert_eq!(rejected, 62);
    assert_eq!(breaker.state(), State::Closed, "both probes succeeded");
}

#[tokio::test(start_paused = true)]
async fn open_duration_grows_on_repeated_trips_and_resets_after_closing() {
    let b = build(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .half_open_permits(1)
            .open_duration(secs(10))
            .open_duration_multiplier(2.0)
            .max_open_duration(secs(60)),
    );
    let mut events = b.subscribe();
    record(&b, Outcome::Failure);
    for expected in [10, 20, 40, 60, 60] {
        let ev = loop {
            let ev = events.try_recv().expect("event");
            if ev.to == State::Open {
                break ev;
            }
        };
        assert_eq!(ev.open_for, Some(secs(expected)));
        assert_eq!(
            b.try_acquire().expect_err("open").retry_after(),
            Some(secs(expected))
        );
        advance(secs(expected) - Duration::from_millis(1)).await;
        assert_eq!(
            b.try_acquire().expect_err("still open").retry_after(),
            Some(Duration::from_millis(1))
        );
        advance(Duration::from_millis(1)).await;
        // The probe fails: open again, for longer.
        record(&b, Outcome::Failure);
    }
    // A successful probe closes and resets the growth.
    advance(secs(60)).await;
    record(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().trips, 0);
    record(&b, Outcome::Failure);
    assert_eq!(
        b.try_acquire().expect_err("open").retry_after(),
        Some(secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_reopens_after_max_wait() {
    let b = build(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .half_open_permits(2)
            .open_duration(secs(1))
            .max_wait_in_half_open(secs(5)),
    );
    let mut events = b.subscribe();
    record(&b, Outcome::Failure);
    advance(secs(1)).await;
    let probe = b.try_acquire().expect("probe");
    assert_eq!(b.state(), State::HalfOpen);
    advance(secs(5)).await;
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), State::Open);
    let reasons: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            Reason::ConsecutiveFailures(1),
            Reason::OpenElapsed,
            Reason::HalfOpenTimeout
        ]
    );
    // The late probe of the past half-open phase changes nothing.
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_gives_its_permit_back() {
    let b = trip_on_one_failure(1);
    record(&b, Outcome::Failure);
    advance(secs(1)).await;
    let probe = b.try_acquire().expect("probe");
    assert!(b.try_acquire().is_err(), "one permit only");
    drop(probe); // cancelled: ignored
    let probe = b.try_acquire().expect("permit returned");
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn calls_admitted_before_a_trip_do_not_count_as_probes() {
    let b = trip_on_one_failure(1);
    let late = b.try_acquire_owned().expect("closed");
    record(&b, Outcome::Failure);
    advance(secs(1)).await;
    let probe = b.try_acquire().expect("probe");
    late.record(Outcome::Success);
    assert_eq!(b.state(), State::HalfOpen);
    probe.record(Outcome::Failure);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn events_follow_the_full_cycle() {
    let b = build(
        CircuitBreakerConfig::builder()
            .name("payments")
            .count_window(4)
            .minimum_calls(4)
            .failure_rate(50.0)
            .half_open_permits(2)
            .open_duration(secs(3)),
    );
    let mut events = b.subscribe();
    for o in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Failure,
    ] {
        record(&b, o);
    }
    advance(secs(3)).await;
    record(&b, Outcome::Success);
    record(&b, Outcome::Success);
    let got: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let states: Vec<_> = got.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        states,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
    assert_eq!(got[0].reason, Reason::FailureRate(50.0));
    assert_eq!(&*got[0].breaker, "payments");
    assert_eq!(got[2].reason, Reason::ProbesSucceeded);
    // The window starts empty after closing.
    assert_eq!(b.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn forced_and_observing_modes() {
    let b = build(CircuitBreakerConfig::builder().consecutive_failures(1));
    let mut events = b.subscribe();

    b.set_mode(Mode::ForceOpen);
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.try_acquire().expect_err("forced open").retry_after(),
        None
    );

    b.set_mode(Mode::ForceClosed);
    for _ in 0..10 {
        record(&b, Outcome::Failure);
    }
    assert_eq!(b.state(), State::Closed);

    b.set_mode(Mode::Disabled);
    for _ in 0..10 {
        record(&b, Outcome::Failure);
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().calls, 0, "disabled records nothing");

    // Metrics-only: trips, reports, but keeps admitting.
    b.set_mode(Mode::MetricsOnly);
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    for _ in 0..5 {
        record(&b, Outcome::Failure);
    }
    b.set_mode(Mode::Normal);
    assert_eq!(b.state(), State::Closed);
    record(&b, Outcome::Failure);
    assert!(b.try_acquire().is_err(), "normal mode rejects again");

    let reasons: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            Reason::ModeChanged(Mode::ForceOpen),
            Reason::ModeChanged(Mode::ForceClosed),
            Reason::ModeChanged(Mode::Disabled),
            Reason::ModeChanged(Mode::MetricsOnly),
            Reason::ConsecutiveFailures(1),
            Reason::ModeChanged(Mode::Normal),
            Reason::ConsecutiveFailures(1),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn every_clone_of_the_service_shares_one_breaker() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .count_window(100)
            .minimum_calls(100)
            .failure_rate(100.0)
            .build()
            .expect("config"),
    );
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async { Err::<(), _>("down") }));
    for i in 0..100 {
        let mut clone = svc.clone();
        let err = clone
            .ready()
            .await
            .expect("ready")
            .call(())
            .await
            .expect_err("fails");
        assert!(err.downcast_ref::<CircuitOpen>().is_none(), "call {i}");
    }
    let err = svc.clone().oneshot(()).await.expect_err("open");
    assert!(err.downcast_ref::<CircuitOpen>().is_some());
}

#[tokio::test(start_paused = true)]
async fn http_classifier_counts_5xx_not_4xx() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(2)
            .build()
            .expect("config"),
    )
    .classify(HttpClassifier::new());
    let breaker = layer.breaker().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|status: u16| async move {
            Ok::<_, std::io::Error>(
                http::Response::builder()
                    .status(status)
                    .body(())
                    .expect("response"),
            )
        }));
    for status in [404, 400, 404, 503, 200, 500] {
        svc.clone().oneshot(status).await.expect("response");
    }
    assert_eq!(breaker.state(), State::Closed);
    svc.clone().oneshot(502).await.expect("response");
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn config_from_serde_validates() {
    let c: CircuitBreakerConfig = serde_json::from_str(
        r#"{"window":{"type":"time","duration":"30s"},"minimum_calls":5,
            "max_wait_in_half_open":"10s","mode":"metrics_only"}"#,
    )
    .expect("valid");
    assert_eq!(c.max_wait_in_half_open(), Some(secs(10)));
    assert_eq!(c.mode(), Mode::MetricsOnly);
    for bad in [
        r#"{"failure_rate": 0}"#,
        r#"{"failure_rate": 101}"#,
        r#"{"window":{"type":"count","size":0}}"#,
        r#"{"window":{"type":"count","size":10,"extra":1}}"#,
        r#"{"window":{"type":"time","duration":"10ms"}}"#,
        r#"{"half_open_permits": 0}"#,
        r#"{"open_duration": "10s", "max_open_duration": "1s"}"#,
        r#"{"open_duration_multiplier": 0.5}"#,
        r#"{"unknown": 1}"#,
    ] {
        assert!(
            serde_json::from_str::<CircuitBreakerConfig>(bad).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        CircuitBreakerConfig::builder()
            .count_window(5)
            .minimum_calls(50)
            .build()
            .expect("ok")
            .minimum_calls(),
        5,
        "minimum capped at the window size"
    );
}
