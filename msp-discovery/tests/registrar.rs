//! Registrar: registers instances while their health checks pass (paused
//! time, MemoryRegistry).

use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::registry::{MemoryRegistry, Registrar, Registry, TargetState};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn instance(port: u16) -> Instance {
    Instance::builder(
        ServiceName::new("legacy").expect("valid name"),
        ([127, 0, 0, 1], port).into(),
    )
    .id(InstanceId::new(format!("legacy-{port}")).expect("valid id"))
    .build()
    .expect("valid instance")
}

/// Health per port, switchable by the test; counts checks.
#[derive(Clone, Default)]
struct Health {
    up: Arc<Mutex<HashMap<u16, bool>>>,
    checks: Arc<AtomicUsize>,
}

impl Health {
    fn set(&self, port: u16, up: bool) {
        self.up.lock().expect("lock").insert(port, up);
    }
    fn get(&self, port: u16) -> bool {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.up
            .lock()
            .expect("lock")
            .get(&port)
            .copied()
            .unwrap_or(false)
    }
}

async fn registered(registry: &MemoryRegistry) -> Vec<u16> {
    let service = ServiceName::new("legacy").expect("name");
    registry
        .instances(&service)
        .await
        .expect("list")
        .iter()
        .map(|i| i.addr().port())
        .collect()
}

async fn wait_until(
    rx: &mut tokio::sync::watch::Receiver<BTreeMap<InstanceId, TargetState>>,
    f: impl FnMut(&BTreeMap<InstanceId, TargetState>) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(3600), rx.wait_for(f))
        .await
        .expect("within an hour of paused time")
        .expect("registrar alive");
}

fn id(port: u16) -> InstanceId {
    instance(port).id().clone()
}

#[tokio::test(start_paused = true)]
async fn registers_healthy_and_deregisters_unhealthy_instances_with_thresholds() {
    let registry = MemoryRegistry::new();
    let health = Health::default();
    health.set(1, true);
    health.set(2, false);
    let h = health.clone();
    let handle = Registrar::new(registry.clone(), move |i: Instance| {
        let h = h.clone();
        async move { h.get(i.addr().port()) }
    })
    .instances([instance(1), instance(2)])
    .interval(Duration::from_secs(10))
    .healthy_threshold(2)
    .unhealthy_threshold(3)
    .ttl(Duration::from_secs(30))
    .spawn();
    let mut states = handle.subscribe();

    // One passing check is not enough…
    wait_until(&mut states, |s| s[&id(1)].passes == 1).await;
    assert!(registered(&registry).await.is_empty());
    // …two are.
    wait_until(&mut states, |s| s[&id(1)].registered).await;
    assert_eq!(registered(&registry).await, vec![1]);
    assert!(!handle.states()[&id(2)].registered);

    // Instance 1 starts failing: still registered after two failures,
    // deregistered after the third.
    health.set(1, false);
    wait_until(&mut states, |s| s[&id(1)].failures == 2).await;
    assert_eq!(registered(&registry).await, vec![1]);
    wait_until(&mut states, |s| !s[&id(1)].registered).await;
    assert!(registered(&registry).await.is_empty());
    assert_eq!(handle.states()[&id(1)].failures, 3);

    // Instance 2 recovers.
    health.set(2, true);
    wait_until(&mut states, |s| s[&id(2)].registered).await;
    assert_eq!(registered(&registry).await, vec![2]);
    assert_eq!(handle.registered(), vec![id(2)]);

    handle.stop().await;
    assert!(registered(&registry).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_check_slower_than_the_timeout_fails() {
    let registry = MemoryRegistry::new();
    let slow = Arc::new(AtomicBool::new(false));
    let s = slow.clone();
    let handle = Registrar::new(registry.clone(), move |_: Instance| {
        let s = s.clone();
        async move {
            if s.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<(), std::io::Error>(())
        }
    })
    .instance(instance(1))
    .interval(Duration::from_secs(5))
    .timeout(Duration::from_secs(1))
    .healthy_threshold(1)
    .unhealthy_threshold(2)
    .spawn();
    let mut states = handle.subscribe();
    wait_until(&mut states, |s| s[&id(1)].registered).await;
    slow.store(true, Ordering::SeqCst);
    wait_until(&mut states, |s| !s[&id(1)].registered).await;
    assert!(registered(&registry).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn registrations_survive_lease_loss_and_dropping_the_handle_deregisters() {
    let registry = MemoryRegistry::new();
    let handle = Registrar::new(registry.clone(), |_: Instance| async { true })
        .instance(instance(1))
        .healthy_threshold(1)
        .ttl(Duration::from_secs(6))
        .spawn();
    let mut states = handle.subscribe();
    wait_until(&mut states, |s| s[&id(1)].registered).await;
    // The registry loses the lease: the Registration puts it back.
    registry.expire(&id(1));
    let view = msp_discovery::registry::ServiceView::new(
        &registry,
        ServiceName::new("legacy").expect("name"),
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        view.wait_for(|s| s.instances().len() == 1),
    )
    .await
    .expect("re-registered");

    drop(handle);
    tokio::time::timeout(
        Duration::from_secs(60),
        view.wait_for(|s| s.instances().is_empty()),
    )
    .await
    .expect("deregistered after drop");
}

#[tokio::test(start_paused = true)]
async fn flapping_checks_do_not_reach_the_thresholds() {
    let registry = MemoryRegistry::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handle = Registrar::new(registry.clone(), move |_: Instance| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move { n.is_multiple_of(2) }
    })
    .instance(instance(1))
    .healthy_threshold(2)
    .spawn();
    let mut states = handle.subscribe();
    // Wait for 20 checks: never two passes in a row, so never registered.
    let mut ever_registered = false;
    while calls.load(Ordering::SeqCst) < 20 {
        tokio::time::timeout(Duration::from_secs(60), states.changed())
            .await
            .expect("a check")
            .expect("alive");
        ever_registered |= states.borrow_and_update()[&id(1)].registered;
    }
    assert!(!ever_registered);
    assert!(registered(&registry).await.is_empty());
}
