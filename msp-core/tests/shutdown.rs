//! The graceful-shutdown coordinator: ordered hooks, drain deadline, health,
//! signals.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use msp_core::health::HealthRegistry;
use msp_core::shutdown::{DrainLayer, HookOutcome, Shutdown};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, s: impl Into<String>) {
    log.lock().expect("not poisoned").push(s.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().expect("not poisoned").clone()
}

#[tokio::test(start_paused = true)]
async fn hooks_run_in_order_with_their_timeouts() {
    let log: Log = Arc::default();
    let shutdown = Shutdown::new();
    let l = log.clone();
    shutdown.before_drain("deregister", Duration::from_secs(1), move || async move {
        push(&l, "deregister");
    });
    let l = log.clone();
    shutdown.before_drain("stuck", Duration::from_secs(2), move || async move {
        push(&l, "stuck started");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        push(&l, "stuck finished");
    });
    let l = log.clone();
    shutdown.before_drain("failing", Duration::from_secs(1), move || async move {
        push(&l, "failing");
        Err::<(), _>("registry unreachable")
    });
    let l = log.clone();
    shutdown.after_drain("flush", Duration::from_secs(1), move || async move {
        push(&l, "flush");
        Ok::<(), std::io::Error>(())
    });
    // Registered after "flush" but before the drain: still runs before it.
    let l = log.clone();
    shutdown.before_drain("last-before", Duration::from_secs(1), move || async move {
        push(&l, "last-before");
    });

    let start = Instant::now();
    shutdown.trigger();
    let report = shutdown.run().await;

    assert_eq!(
        entries(&log),
        [
            "deregister",
            "stuck started",
            "failing",
            "last-before",
            "flush"
        ]
    );
    let names: Vec<&str> = report.hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["deregister", "stuck", "failing", "last-before", "flush"]
    );
    assert_eq!(report.hooks[0].outcome, HookOutcome::Completed);
    assert_eq!(report.hooks[1].outcome, HookOutcome::TimedOut);
    assert_eq!(report.hooks[1].elapsed, Duration::from_secs(2));
    assert_eq!(
        report.hooks[2].outcome,
        HookOutcome::Failed("registry unreachable".into())
    );
    assert!(report.hooks[4].outcome.is_completed());
    // Only the stuck hook's timeout took time.
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    // Hooks run once.
    assert!(shutdown.run().await.hooks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn drain_deadline_is_honoured() {
    let shutdown = Shutdown::new();
    let _stuck = shutdown.in_flight_guard();
    let finishing = shutdown.in_flight_guard();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(finishing);
    });

    let start = Instant::now();
    let report = shutdown.drain(Duration::from_secs(10)).await;
    assert_eq!(report.in_flight_at_start, 2);
    assert_eq!(report.abandoned, 1);
    assert_eq!(report.waited, Duration::from_secs(10));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn drain_returns_as_soon_as_the_last_request_ends() {
    let shutdown = Shutdown::new();
    let guards = [shutdown.in_flight_guard(), shutdown.in_flight_guard()];
    assert_eq!(shutdown.in_flight(), 2);
    tokio::spawn(async move {
        let [a, b] = guards;
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(b);
    });
    let report = shutdown.drain(Duration::from_secs(30)).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(report.waited, Duration::from_secs(3));
    assert_eq!(shutdown.in_flight(), 0);

    // Nothing in flight: immediate.
    let report = shutdown.drain(Duration::from_secs(30)).await;
    assert_eq!(report.waited, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn drain_layer_counts_requests_until_the_body_ends() {
    let shutdown = Shutdown::builder()
        .drain_timeout(Duration::from_secs(5))
        .build();
    let mut svc = DrainLayer::new(&shutdown).layer(service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
    }));
    let fut = svc.ready().await.expect("ready").call(Request::new(()));
    assert_eq!(shutdown.in_flight(), 1);
    let res = fut.await.expect("ok");
    assert_eq!(shutdown.in_flight(), 1, "the body is not read yet");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"done");
    assert_eq!(shutdown.in_flight(), 0);

    // A dropped request future leaves too.
    let fut = svc.ready().await.expect("ready").call(Request::new(()));
    assert_eq!(shutdown.in_flight(), 1);
    drop(fut);
    assert_eq!(shutdown.in_flight(), 0);

    // A response held past the deadline is abandoned by `run`.
    let res = svc.oneshot(Request::new(())).await.expect("ok");
    shutdown.trigger();
    let start = Instant::now();
    let report = shutdown.run().await;
    assert_eq!(report.drain.abandoned, 1);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    drop(res);
}

#[tokio::test(start_paused = true)]
async fn run_marks_not_ready_first_and_signals_after_the_hooks() {
    let log: Log = Arc::default();
    let health = HealthRegistry::new();
    let shutdown = Shutdown::builder()
        .health(health.clone())
        .grace_period(Duration::from_secs(5))
        .build();
    let (l, h) = (log.clone(), health.clone());
    shutdown.before_drain("deregister", Duration::from_secs(1), move || async move {
        push(&l, format!("deregister (ready: {})", h.is_ready()));
    });
    let signal = shutdown.stop_accepting();
    let l = log.clone();
    let server = tokio::spawn(async move {
        signal.await;
        push(&l, format!("stop accepting at {:?}", Instant::now()));
    });

    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });
    // Nothing happens until the trigger.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(entries(&log).is_empty());
    assert!(health.is_ready());
    assert!(!shutdown.is_triggered());

    let triggered_at = Instant::now();
    shutdown.trigger();
    let report = run.await.expect("run completes");
    server.await.expect("server task");
    assert!(!health.is_ready());
    assert_eq!(report.drain.abandoned, 0);
    assert_eq!(
        entries(&log),
        [
            "deregister (ready: false)".to_owned(),
            format!(
                "stop accepting at {:?}",
                triggered_at + Duration::from_secs(5)
            ),
        ]
    );
    // A signal made after the fact resolves at once.
    shutdown.stop_accepting().await;
    shutdown.triggered().clone().await;
}

#[tokio::test]
async fn sigterm_triggers_the_shutdown() {
    let shutdown = Shutdown::new();
    shutdown
        .listen_for_signals()
        .expect("signal handlers installed");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), shutdown.triggered())
        .await
        .expect("SIGTERM triggered the shutdown");
    assert!(shutdown.is_triggered());
}
