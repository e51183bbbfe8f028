//! Active health checks against real loopback servers (HTTP, TCP) and
//! custom checks on paused time.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use axum::{Router, http::StatusCode, routing::get};
use msp_core::{BoxError, Instance, InstanceId, ServiceName};
use msp_discovery::balance::{BalanceConfig, EndpointSet, Strategy};
use msp_discovery::health::{CheckError, HealthCheck, HealthCheckConfig, HealthCheckConfigError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A server whose `/health` answers 200 while `ok` is set, 503 otherwise.
async fn server(ok: Arc<AtomicBool>) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/health",
        get(move || {
            let ok = ok.clone();
            async move {
                if ok.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

fn inst(name: &str, addr: SocketAddr) -> Instance {
    Instance::builder(ServiceName::new("svc").unwrap(), addr)
        .id(InstanceId::new(name).unwrap())
        .build()
        .unwrap()
}

fn set() -> EndpointSet {
    EndpointSet::new(
        ServiceName::new("svc").unwrap(),
        BalanceConfig::builder()
            .strategy(Strategy::RoundRobin)
            .build()
            .unwrap(),
    )
}

async fn wait(set: &EndpointSet, id: &str, healthy: bool) {
    let id = InstanceId::new(id).unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        set.wait_for(|s| s.get(&id).is_some_and(|e| e.is_healthy() == healthy)),
    )
    .await
    .expect("health verdict within 20 s");
}

fn fast(check: HealthCheck) -> HealthCheck {
    check
        .interval(Duration::from_millis(20))
        .timeout(Duration::from_secs(2))
        .jitter(0.0)
        .healthy_threshold(2)
        .unhealthy_threshold(2)
}

#[tokio::test]
async fn http_check_takes_failing_instance_out_and_back() {
    let a_ok = Arc::new(AtomicBool::new(true));
    let (a, _ta) = server(a_ok.clone()).await;
    let (b, _tb) = server(Arc::new(AtomicBool::new(true))).await;
    let set = set();
    set.update([inst("a", a), inst("b", b)]);
    let _checks = fast(HealthCheck::http("/health")).spawn(set.clone());

    a_ok.store(false, Ordering::SeqCst);
    wait(&set, "a", false).await;
    assert!(
        (0..100).all(|_| set.pick(None).unwrap().addr() == b),
        "the failing instance gets no traffic"
    );

    a_ok.store(true, Ordering::SeqCst);
    wait(&set, "a", true).await;
    let picks: Vec<SocketAddr> = (0..4).map(|_| set.pick(None).unwrap().addr()).collect();
    assert!(picks.contains(&a) && picks.contains(&b));
}

#[tokio::test]
async fn http_check_wants_2xx() {
    let (a, _t) = server(Arc::new(AtomicBool::new(true))).await;
    let i = inst("a", a);
    assert!(HealthCheck::http("health").probe(&i).await.is_ok());
    match HealthCheck::http("/missing").probe(&i).await {
        Err(CheckError::Status(s)) => assert_eq!(s, StatusCode::NOT_FOUND),
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn tcp_check_follows_the_listener() {
    let (a, task) = server(Arc::new(AtomicBool::new(true))).await;
    let (b, _tb) = server(Arc::new(AtomicBool::new(true))).await;
    let set = set();
    set.update([inst("a", a), inst("b", b)]);
    let _checks = fast(HealthCheck::tcp()).spawn(set.clone());

    task.abort(); // the listener closes: connects are refused
    wait(&set, "a", false).await;
    assert!((0..10).all(|_| set.pick(None).unwrap().addr() == b));

    // The instance restarts on the same port.
    let listener = tokio::net::TcpListener::bind(a).await.unwrap();
    let _t2 = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new()).await;
    });
    wait(&set, "a", true).await;
}

#[tokio::test(start_paused = true)]
async fn custom_check_thresholds_and_timeout() {
    let state: Arc<Mutex<HashMap<String, &'static str>>> = Arc::default();
    let s2 = state.clone();
    let check = HealthCheck::custom(move |i: Instance| {
        let mode = s2
            .lock()
            .unwrap()
            .get(i.id().as_str())
            .copied()
            .unwrap_or("ok");
        async move {
            match mode {
                "ok" => Ok(()),
                "hang" => std::future::pending().await,
                _ => Err(BoxError::from("down")),
            }
        }
    })
    .interval(Duration::from_secs(1))
    .timeout(Duration::from_millis(100))
    .jitter(0.0)
    .unhealthy_threshold(3)
    .healthy_threshold(2);

    let set = set();
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
    set.update([inst("a", a), inst("b", b)]);
    let _checks = check.spawn(set.clone());
    tokio::time::sleep(Duration::from_millis(10)).await;

    state.lock().unwrap().insert("a".into(), "down");
    // Two failures are below the threshold of three...
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        set.snapshot()
            .get(&InstanceId::new("a").unwrap())
            .unwrap()
            .is_healthy()
    );
    // ...the third takes it out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !set.snapshot()
            .get(&InstanceId::new("a").unwrap())
            .unwrap()
            .is_healthy()
    );

    // A hanging check is a failure after the timeout.
    state.lock().unwrap().insert("b".into(), "hang");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let snap = set.snapshot();
    assert!(
        !snap
            .get(&InstanceId::new("b").unwrap())
            .unwrap()
            .is_healthy()
    );
    assert!(
        snap.is_panic(),
        "none healthy: panic mode balances over all"
    );

    state.lock().unwrap().insert("a".into(), "ok");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snap = set.snapshot();
    assert!(
        snap.get(&InstanceId::new("a").unwrap())
            .unwrap()
            .is_healthy()
    );
    assert!(!snap.is_panic());
}

#[tokio::test(start_paused = true)]
async fn checks_follow_membership() {
    let probes: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let p2 = probes.clone();
    let total = Arc::new(AtomicUsize::new(0));
    let t2 = total.clone();
    let check = HealthCheck::custom(move |i: Instance| {
        *p2.lock().unwrap().entry(i.id().to_string()).or_default() += 1;
        t2.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    })
    .interval(Duration::from_secs(1))
    .jitter(0.0);
    let set = set();
    let a = inst("a", "127.0.0.1:1".parse().unwrap());
    let b = inst("b", "127.0.0.1:2".parse().unwrap());
    set.update([a.clone()]);
    let checks = check.spawn(set.clone());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(probes.lock().unwrap()["a"], 3);

    set.update([a.clone(), b.clone()]); // b joins: checked at once
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(probes.lock().unwrap()["b"], 1);

    set.update([b]); // a leaves: its checks stop
    tokio::time::sleep(Duration::from_secs(5)).await;
    let p = probes.lock().unwrap().clone();
    assert_eq!(p["a"], 3);
    assert!(p["b"] >= 5);

    drop(checks); // all checks stop
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = total.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(total.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn a_check_from_a_yaml_file_takes_a_failing_instance_out() {
    let config: HealthCheckConfig = serde_saphyr::from_str(
        "
path: /health
interval: 20ms
timeout: 2s
jitter: 0.0
healthy_threshold: 1
unhealthy_threshold: 1
",
    )
    .unwrap();
    let a_ok = Arc::new(AtomicBool::new(true));
    let (a, _ta) = server(a_ok.clone()).await;
    let set = set();
    set.update([inst("a", a)]);
    let _checks = HealthCheck::from_config(&config).spawn(set.clone());
    a_ok.store(false, Ordering::SeqCst);
    wait(&set, "a", false).await;
    a_ok.store(true, Ordering::SeqCst);
    wait(&set, "a", true).await;
}

#[test]
fn health_check_config_rejects_what_cannot_work() {
    assert_eq!(
        HealthCheckConfig::builder().http("health").build(),
        Err(HealthCheckConfigError::Path("health".into()))
    );
    assert_eq!(
        HealthCheckConfig::builder()
            .interval(Duration::ZERO)
            .build(),
        Err(HealthCheckConfigError::Zero("interval"))
    );
    assert_eq!(
        HealthCheckConfig::builder().unhealthy_threshold(0).build(),
        Err(HealthCheckConfigError::Zero("unhealthy_threshold"))
    );
    assert_eq!(
        HealthCheckConfig::builder().jitter(1.5).build(),
        Err(HealthCheckConfigError::Jitter(1.5))
    );
    // No `path`: a TCP check.
    let tcp: HealthCheckConfig = serde_saphyr::from_str("interval: 5s").unwrap();
    assert_eq!(tcp.path(), None);
    let err = serde_saphyr::from_str::<HealthCheckConfig>("timeout: 0s").unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
}
