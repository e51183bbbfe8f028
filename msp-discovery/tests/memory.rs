//! MemoryRegistry, Registration and ServiceView behaviour with paused time.

use futures_util::StreamExt;
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::registry::{
    MemoryRegistry, RegistrationConfig, RegistrationConfigError, RegistrationStatus, Registry,
    ServiceView, WatchEvent, WatchStream,
};
use std::time::Duration;

fn instance(service: &str, port: u16) -> Instance {
    Instance::builder(
        ServiceName::new(service).expect("valid name"),
        ([127, 0, 0, 1], port).into(),
    )
    .id(InstanceId::new(format!("{service}-{port}")).expect("valid id"))
    .build()
    .expect("valid instance")
}

async fn next(watch: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .expect("a watch event within 60 s of (paused) time")
        .expect("watch streams never end")
}

/// Bounds a wait by 10 minutes of (paused) time so a broken test fails
/// instead of hanging.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(600), f)
        .await
        .expect("condition reached within 600 s of paused time")
}

async fn present(registry: &MemoryRegistry, inst: &Instance) -> bool {
    registry
        .instances(inst.service())
        .await
        .expect("registry available")
        .contains(inst)
}

#[tokio::test(start_paused = true)]
async fn watch_sees_snapshot_then_added_and_removed() {
    let registry = MemoryRegistry::new();
    let existing = instance("orders", 1);
    registry.insert(existing.clone()).expect("insert");
    let mut watch = registry.watch(existing.service());
    match next(&mut watch).await {
        WatchEvent::Snapshot(list) => assert_eq!(list, vec![existing.clone()]),
        other => panic!("expected a snapshot, got {other:?}"),
    }

    let fresh = instance("orders", 2);
    let registration = registry
        .register(fresh.clone(), Duration::from_secs(10))
        .await
        .expect("register");
    match next(&mut watch).await {
        WatchEvent::Added(i) => assert_eq!(i, fresh),
        other => panic!("expected Added, got {other:?}"),
    }
    // Another service's changes are not seen here.
    registry.insert(instance("payments", 3)).expect("insert");

    registration.deregister().await.expect("deregister");
    match next(&mut watch).await {
        WatchEvent::Removed(id) => assert_eq!(&id, fresh.id()),
        other => panic!("expected Removed, got {other:?}"),
    }
    assert_eq!(
        registry.instances(existing.service()).await.expect("list"),
        vec![existing]
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_the_lease_alive_far_beyond_its_ttl() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let registration = registry
        .register(me.clone(), Duration::from_secs(3))
        .await
        .expect("register");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(present(&registry, &me).await);
    assert_eq!(registration.status(), RegistrationStatus::Registered);
}

#[tokio::test(start_paused = true)]
async fn lease_expires_when_heartbeats_stop() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let ttl = Duration::from_secs(5);
    let registration = registry.register(me.clone(), ttl).await.expect("register");
    let mut watch = registry.watch(me.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 1));

    // The process "crashes": no more heartbeats, no deregistration.
    let abandoned_at = tokio::time::Instant::now();
    let mut status = registration.subscribe();
    registration.abandon();
    within(status.wait_for(|s| *s == RegistrationStatus::Abandoned))
        .await
        .expect("status");
    tokio::time::sleep(ttl - Duration::from_millis(100)).await;
    assert!(
        present(&registry, &me).await,
        "removed before the TTL ran out"
    );

    match next(&mut watch).await {
        WatchEvent::Removed(id) => assert_eq!(&id, me.id()),
        other => panic!("expected Removed, got {other:?}"),
    }
    assert!(
        abandoned_at.elapsed() <= ttl,
        "expired late: {:?}",
        abandoned_at.elapsed()
    );
    assert!(!present(&registry, &me).await);
}

#[tokio::test(start_paused = true)]
async fn registration_comes_back_after_its_lease_is_lost() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let registration = registry
        .register(me.clone(), Duration::from_secs(6))
        .await
        .expect("register");
    let mut watch = registry.watch(me.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 1));
    let mut status = registration.subscribe();

    // The registry loses the lease (restart, expiry during a partition…).
    assert!(registry.expire(me.id()));
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == me.id()));
    // …and the registration puts the instance back by itself.
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == me));
    within(status.wait_for(|s| *s == RegistrationStatus::Registered))
        .await
        .expect("status");
    assert!(present(&registry, &me).await);
}

#[tokio::test(start_paused = true)]
async fn administrative_deregister_is_undone_by_a_live_registration() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let _registration = registry
        .register(me.clone(), Duration::from_secs(6))
        .await
        .expect("register");
    let mut watch = registry.watch(me.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(_)));
    registry
        .deregister(me.id())
        .await
        .expect("deregister by id");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(_)));
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == me));
    assert!(matches!(
        registry
            .deregister(&InstanceId::new("nope").expect("id"))
            .await,
        Err(msp_discovery::registry::RegistryError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn outage_longer_than_the_ttl_keeps_the_view_and_reregisters_afterwards() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let ttl = Duration::from_secs(6);
    let registration = registry.register(me.clone(), ttl).await.expect("register");
    let view = ServiceView::new(&registry, me.service().clone());
    within(view.ready()).await;
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&me));

    registry.set_available(false);
    within(view.wait_for(|s| s.is_stale())).await;
    assert!(registry.instances(me.service()).await.is_err());

    // Renewals fail; the lease expires on the registry's side meanwhile.
    let mut status = registration.subscribe();
    within(status.wait_for(|s| *s == RegistrationStatus::Unconfirmed))
        .await
        .expect("status");
    within(status.wait_for(|s| *s == RegistrationStatus::Lost))
        .await
        .expect("status");
    tokio::time::sleep(ttl * 3).await;
    // The client still serves the last known instance.
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&me));
    assert!(view.is_stale());
    assert!(view.stale_since().is_some());

    registry.set_available(true);
    within(status.wait_for(|s| *s == RegistrationStatus::Registered))
        .await
        .expect("status");
    let state = within(view.wait_for(|s| !s.is_stale())).await;
    assert_eq!(&state.instances()[..], std::slice::from_ref(&me));
    assert!(present(&registry, &me).await);
}

#[tokio::test(start_paused = true)]
async fn view_reconciles_changes_made_during_an_outage() {
    let registry = MemoryRegistry::new();
    let a = instance("orders", 1);
    let b = instance("orders", 2);
    registry.insert(a.clone()).expect("insert");
    let view = ServiceView::new(&registry, a.service().clone());
    within(view.ready()).await;

    registry.set_available(false);
    within(view.wait_for(|s| s.is_stale())).await;
    // Changes the client cannot see while the registry is unreachable.
    registry.set_available(true);
    registry.expire(a.id());
    registry.insert(b.clone()).expect("insert");
    let state = within(
        view.wait_for(|s| !s.is_stale() && s.instances().len() == 1 && s.instances()[0] == b),
    )
    .await;
    assert!(state.is_ready());
}

/// Compile-time check: the view's waiting futures can cross threads.
fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[tokio::test(start_paused = true)]
async fn view_futures_are_send_and_can_be_spawned() {
    let registry = MemoryRegistry::new();
    let a = instance("orders", 1);
    let mut view = ServiceView::new(&registry, a.service().clone());
    let waiter = view.clone();
    // Spawned (requires `Send`) before the first snapshot, so the futures
    // really wait.
    let task = tokio::spawn(assert_send(async move {
        waiter.ready().await;
        waiter.wait_for(|s| s.instances().len() == 1).await
    }));
    registry.insert(a.clone()).expect("insert");
    let state = within(task).await.expect("task");
    assert_eq!(&state.instances()[..], std::slice::from_ref(&a));
    registry.expire(a.id());
    // Every change this handle has not seen yet, until the removal.
    while !within(assert_send(view.changed()))
        .await
        .instances()
        .is_empty()
    {}
}

#[tokio::test(start_paused = true)]
async fn dropping_the_registration_deregisters() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let view = ServiceView::new(&registry, me.service().clone());
    let registration = registry
        .register(me.clone(), Duration::from_secs(6))
        .await
        .expect("register");
    within(view.wait_for(|s| s.instances().len() == 1)).await;
    drop(registration);
    within(view.wait_for(|s| s.instances().is_empty())).await;
    assert!(!present(&registry, &me).await);
}

#[tokio::test(start_paused = true)]
async fn deregister_on_waits_for_the_shutdown_future() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let registration = registry
        .register(me.clone(), Duration::from_secs(6))
        .await
        .expect("register");
    let (trigger, signal) = tokio::sync::oneshot::channel::<()>();
    let task = registration.deregister_on(signal);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        present(&registry, &me).await,
        "deregistered before shutdown"
    );
    trigger.send(()).expect("task alive");
    task.await.expect("task").expect("deregistered");
    assert!(!present(&registry, &me).await);
}

#[tokio::test(start_paused = true)]
async fn msp_core_shutdown_deregisters_before_the_server_stops_accepting() {
    let registry = MemoryRegistry::new();
    let me = instance("orders", 1);
    let shutdown = msp_core::shutdown::Shutdown::new();
    let registration = registry
        .register(me.clone(), Duration::from_secs(6))
        .await
        .expect("register");
    let status = registration.subscribe();
    registration.deregister_before_drain(&shutdown, Duration::from_secs(2));
    // Still registered (and heartbeating) until the shutdown.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(present(&registry, &me).await);

    let stop_accepting = shutdown.stop_accepting();
    shutdown.trigger();
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });
    within(stop_accepting).await;
    // Gone before the server stops accepting (and before the drain).
    assert!(!present(&registry, &me).await);
    assert_eq!(*status.borrow(), RegistrationStatus::Deregistered);
    let report = within(run).await.expect("run");
    assert_eq!(report.hooks.len(), 1);
    assert_eq!(report.hooks[0].name, "deregister orders/orders-1");
    assert!(report.hooks[0].outcome.is_completed());
}

#[tokio::test(start_paused = true)]
async fn invalid_registration_settings_are_typed_errors() {
    let heartbeat_10s = RegistrationConfig::builder()
        .heartbeat(Duration::from_secs(10))
        .build()
        .expect("valid");
    let registry = MemoryRegistry::new().with_registration_config(heartbeat_10s);
    let err = registry
        .register(instance("orders", 1), Duration::from_secs(5))
        .await
        .expect_err("heartbeat longer than the TTL");
    assert!(matches!(
        err,
        msp_discovery::registry::RegistryError::Config(_)
    ));
    let err = MemoryRegistry::new()
        .register(instance("orders", 1), Duration::ZERO)
        .await
        .expect_err("zero TTL");
    assert!(matches!(
        err,
        msp_discovery::registry::RegistryError::Config(_)
    ));

    // 9 s ± 20 % may wait up to 10.8 s: too long for a 10 s lease.
    let heartbeat_9s = |jitter| {
        RegistrationConfig::builder()
            .heartbeat(Duration::from_secs(9))
            .jitter(jitter)
            .build()
            .expect("valid")
    };
    let err = MemoryRegistry::new()
        .with_registration_config(heartbeat_9s(0.2))
        .register(instance("orders", 1), Duration::from_secs(10))
        .await
        .expect_err("heartbeat with jitter longer than the TTL");
    assert!(err.to_string().contains("jitter"), "{err}");
    let fine = MemoryRegistry::new()
        .with_registration_config(heartbeat_9s(0.1))
        .register(instance("orders", 1), Duration::from_secs(10))
        .await
        .expect("9 s ± 10 % fits a 10 s lease");
    fine.deregister().await.expect("deregistered");

    // What does not depend on the TTL is refused when the config is built.
    assert_eq!(
        RegistrationConfig::builder().jitter(1.0).build(),
        Err(RegistrationConfigError::Jitter(1.0))
    );
    assert_eq!(
        RegistrationConfig::builder()
            .heartbeat(Duration::ZERO)
            .build(),
        Err(RegistrationConfigError::Zero("heartbeat"))
    );
}

#[tokio::test(start_paused = true)]
async fn registering_while_unavailable_fails() {
    let registry = MemoryRegistry::new();
    registry.set_available(false);
    let err = registry
        .register(instance("orders", 1), Duration::from_secs(5))
        .await
        .expect_err("unavailable");
    assert!(err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn a_watch_started_during_an_outage_is_stale_then_snapshots() {
    let registry = MemoryRegistry::new();
    let a = instance("orders", 1);
    registry.insert(a.clone()).expect("insert");
    registry.set_available(false);
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Stale(e) if e.is_transient()));
    registry.set_available(true);
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l == vec![a.clone()]));
}
