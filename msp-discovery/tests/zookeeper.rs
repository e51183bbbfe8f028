//! ZooKeeperRegistry against a real ZooKeeper: a private server per test
//! (Debian's `zookeeper` package), which the test stops, restarts, empties
//! or cuts off behind a proxy.
#![cfg(feature = "zookeeper")]

mod common;

use common::private_zookeeper::PrivateZooKeeper;
use common::proxy::Proxy;
use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use msp_core::backoff::Backoff;
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::registry::{
    RegistrationConfig, RegistrationStatus, Registry, RegistryError, ServiceView, WatchEvent,
    WatchStream, ZooKeeperRegistry,
};
use std::collections::BTreeSet;
use std::time::Duration;
use zookeeper_client as zk;

const WAIT: Duration = Duration::from_secs(30);

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
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("a watch event within 30 s")
        .expect("watch streams never end")
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} within 30 s"))
}

fn fast_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(50))
        .max_delay(Duration::from_millis(500))
        .build()
        .expect("valid backoff")
}

async fn connect(connect: &str) -> ZooKeeperRegistry {
    ZooKeeperRegistry::connect(connect)
        .await
        .expect("connect")
        .with_registration_config(
            RegistrationConfig::builder()
                .retry(fast_backoff())
                // Opening a session and creating the znode on a loaded CI
                // machine may take longer than the default TTL / 2.
                .timeout(Duration::from_secs(3))
                .build()
                .expect("valid registration config"),
        )
        .with_watch_retry(fast_backoff())
}

/// A plain client of the test's own, to look at and tamper with znodes.
async fn raw(zk: &PrivateZooKeeper) -> zk::Client {
    zk::Client::connect(&zk.connect_string())
        .await
        .expect("raw client")
}

async fn wait_status(
    status: &mut tokio::sync::watch::Receiver<RegistrationStatus>,
    what: &str,
    want: RegistrationStatus,
) {
    within(what, status.wait_for(|s| *s == want))
        .await
        .expect("status channel open");
}

#[tokio::test]
async fn register_then_watch_sees_it_and_deregister_removes_it() {
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let registry = connect(&server.connect_string()).await;
    let a = instance("orders", 1);
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.is_empty()));

    let registration = registry
        .register(a.clone(), Duration::from_secs(5))
        .await
        .expect("register");
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == a));
    assert_eq!(
        registry.instances(a.service()).await.expect("list"),
        vec![a.clone()]
    );

    // The layout: an ephemeral znode named by the id, holding the
    // instance's JSON (what the etcd backend stores).
    let raw = raw(&server).await;
    let (data, stat) = raw
        .get_data("/msp/services/orders/orders-1")
        .await
        .expect("the instance znode");
    assert_ne!(stat.ephemeral_owner, 0, "an ephemeral znode");
    assert_ne!(stat.ephemeral_owner, raw.session_id().0);
    let stored: Instance = serde_json::from_slice(&data).expect("instance JSON");
    assert_eq!(stored, a);
    assert_eq!(registry.path_of(&a), "/msp/services/orders/orders-1");

    registration.deregister().await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    assert!(
        registry
            .instances(a.service())
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        raw.check_stat("/msp/services/orders/orders-1")
            .await
            .expect("exists"),
        None
    );
}

#[tokio::test]
async fn instance_of_a_process_that_stops_heartbeating_is_removed_when_its_session_expires() {
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let registry = connect(&server.connect_string()).await;
    let observer = registry
        .clone()
        .with_prefix("/msp/services")
        .expect("prefix");
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(2))
        .await
        .expect("register");
    let mut status = registration.subscribe();
    let mut watch = observer.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l == vec![a.clone()]));

    // The session outlives several TTLs while the process lives…
    let kept = tokio::time::timeout(Duration::from_secs(3), watch.next()).await;
    assert!(kept.is_err(), "unexpected event while registered: {kept:?}");
    assert_eq!(*status.borrow_and_update(), RegistrationStatus::Registered);

    // …and once the process stops (as a crash: no deregistration), the
    // server expires its session and the ephemeral znode goes with it.
    registration.abandon();
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    assert!(
        observer
            .instances(a.service())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn session_expired_in_a_partition_loses_the_instance_and_the_registration_returns() {
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let proxy = Proxy::start(server.addr()).await;
    // The instance reaches ZooKeeper through the proxy; the observer
    // directly.
    let registry = connect(&proxy.addr().to_string())
        .await
        .with_timeout(Duration::from_millis(500));
    let observer = connect(&server.connect_string()).await;
    let a = instance("orders", 1);
    let ttl = Duration::from_secs(1);
    let registration = registry.register(a.clone(), ttl).await.expect("register");
    let mut status = registration.subscribe();
    let view = ServiceView::new(&observer, a.service().clone());
    within("view ready", view.ready()).await;
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&a));
    let raw = raw(&server).await;
    let path = registry.path_of(&a);
    let first_owner = raw
        .check_stat(&path)
        .await
        .expect("exists")
        .expect("znode")
        .ephemeral_owner;

    // Cut off for longer than the session timeout: the server expires the
    // session, and the instance is gone for everyone else.
    proxy.set_open(false);
    within(
        "instance gone from the observer's view",
        view.wait_for(|s| s.instances().is_empty()),
    )
    .await;
    wait_status(&mut status, "lease known lost", RegistrationStatus::Lost).await;

    // Reachable again: the registration opens a new session and creates
    // the znode again by itself.
    proxy.set_open(true);
    wait_status(
        &mut status,
        "registered again",
        RegistrationStatus::Registered,
    )
    .await;
    let state = within(
        "instance back in the observer's view",
        view.wait_for(|s| !s.instances().is_empty()),
    )
    .await;
    assert_eq!(&state.instances()[..], std::slice::from_ref(&a));
    let owner = raw
        .check_stat(&path)
        .await
        .expect("exists")
        .expect("znode")
        .ephemeral_owner;
    assert_ne!(owner, first_owner, "created again in a new session");
    registration.deregister().await.expect("deregister");
    within("view empty", view.wait_for(|s| s.instances().is_empty())).await;
}

#[tokio::test]
async fn server_restart_keeps_clients_serving_and_the_registration_returns() {
    let Some(mut server) = PrivateZooKeeper::start() else {
        return;
    };
    let registry = connect(&server.connect_string()).await;
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(3))
        .await
        .expect("register");
    let mut status = registration.subscribe();
    let view = ServiceView::new(&registry, a.service().clone());
    within("view ready", view.ready()).await;
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&a));
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 1));

    server.kill();
    // The client keeps the last instances, marked stale.
    within("view stale", view.wait_for(|s| s.is_stale())).await;
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&a));
    assert!(matches!(next(&mut watch).await, WatchEvent::Stale(e) if e.is_transient()));
    within(
        "renewals failing",
        status.wait_for(|s| *s != RegistrationStatus::Registered),
    )
    .await
    .expect("status");
    assert!(registry.instances(a.service()).await.is_err());
    assert_eq!(&view.snapshot()[..], std::slice::from_ref(&a));

    server.restart();
    // Nothing done by the application: the registration and the watch
    // recover on their own.
    wait_status(
        &mut status,
        "registration back",
        RegistrationStatus::Registered,
    )
    .await;
    let state = within("view fresh", view.wait_for(|s| !s.is_stale())).await;
    assert_eq!(&state.instances()[..], std::slice::from_ref(&a));
    loop {
        match next(&mut watch).await {
            WatchEvent::Resumed => break,
            WatchEvent::Added(i) => assert_eq!(i, a),
            WatchEvent::Removed(id) => assert_eq!(&id, a.id()),
            other => panic!("expected the watch to resume, got {other:?}"),
        }
    }
    let listed = within("listed", async {
        loop {
            match registry.instances(a.service()).await {
                Ok(listed) if listed.len() == 1 => return listed,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(listed, vec![a.clone()]);
    registration.deregister().await.expect("deregister");
    within("view empty", view.wait_for(|s| s.instances().is_empty())).await;
}

#[tokio::test]
async fn server_that_lost_every_session_gets_the_registration_back() {
    let Some(mut server) = PrivateZooKeeper::start() else {
        return;
    };
    let registry = connect(&server.connect_string()).await;
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(2))
        .await
        .expect("register");
    let mut status = registration.subscribe();
    let view = ServiceView::new(&registry, a.service().clone());
    within("view ready", view.ready()).await;

    // Restarted without its data (a rebuilt node): the server knows none
    // of the sessions, so reconnecting clients are told theirs expired.
    server.restart_empty();
    wait_status(&mut status, "lease known lost", RegistrationStatus::Lost).await;
    wait_status(
        &mut status,
        "registered again",
        RegistrationStatus::Registered,
    )
    .await;
    let raw = raw(&server).await;
    let (data, stat) = within("the znode back", async {
        loop {
            match raw.get_data(&registry.path_of(&a)).await {
                Ok(found) => return found,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_ne!(stat.ephemeral_owner, 0);
    assert_eq!(serde_json::from_slice::<Instance>(&data).expect("json"), a);
    // The view's session expired too: it opened a new one and listed.
    let state = within(
        "view fresh with the instance",
        view.wait_for(|s| !s.is_stale() && s.instances().len() == 1),
    )
    .await;
    assert_eq!(&state.instances()[..], std::slice::from_ref(&a));
}

#[tokio::test]
async fn watch_across_a_reconnection_replays_what_changed_meanwhile() {
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let proxy = Proxy::start(server.addr()).await;
    let watcher = connect(&proxy.addr().to_string()).await;
    let writer = connect(&server.connect_string()).await;
    let (a, b, c) = (
        instance("orders", 1),
        instance("orders", 2),
        instance("orders", 3),
    );
    let ra = writer
        .register(a.clone(), Duration::from_secs(10))
        .await
        .expect("register");
    let rb = writer
        .register(b.clone(), Duration::from_secs(10))
        .await
        .expect("register");
    let mut watch = watcher.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 2));
    let view = ServiceView::new(&watcher, a.service().clone());
    within("view ready", view.ready()).await;

    proxy.set_open(false);
    assert!(matches!(next(&mut watch).await, WatchEvent::Stale(e) if e.is_transient()));
    within("view stale", view.wait_for(|s| s.is_stale())).await;

    // While the watcher is cut off: one instance leaves, one arrives, one
    // changes.
    ra.deregister().await.expect("deregister");
    let rc = writer
        .register(c.clone(), Duration::from_secs(10))
        .await
        .expect("register");
    let b2 = Instance::builder(b.service().clone(), b.addr())
        .id(b.id().clone())
        .metadata("zone", "eu-1")
        .build()
        .expect("instance");
    let raw = raw(&server).await;
    raw.set_data(
        &writer.path_of(&b),
        &serde_json::to_vec(&b2).expect("json"),
        None,
    )
    .await
    .expect("set data");

    proxy.set_open(true);
    let mut removed = BTreeSet::new();
    let mut added = Vec::new();
    loop {
        match next(&mut watch).await {
            WatchEvent::Resumed => break,
            WatchEvent::Removed(id) => {
                removed.insert(id);
            }
            WatchEvent::Added(i) => added.push(i),
            other => panic!("expected a replay, got {other:?}"),
        }
    }
    assert_eq!(removed, BTreeSet::from([a.id().clone()]));
    added.sort_by(|x, y| x.id().cmp(y.id()));
    assert_eq!(added, vec![b2.clone(), c.clone()]);
    let state = within("view reconciled", view.wait_for(|s| !s.is_stale())).await;
    let state = if state.instances().len() == 2 {
        state
    } else {
        within(
            "view reconciled",
            view.wait_for(|s| s.instances().len() == 2),
        )
        .await
    };
    assert_eq!(&state.instances()[..], &[b2, c.clone()]);

    // And the re-armed watch keeps following changes.
    rc.deregister().await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == c.id()));
    drop(rb);
}

#[test]
fn invalid_znode_data_is_never_served_and_is_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let invalid = move || -> u64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, _, _, _)| {
                key.key().name() == "msp_discovery_invalid_entries_total"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "backend" && l.value() == "zookeeper")
            })
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum()
    };
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let Some(server) = PrivateZooKeeper::start() else {
                return;
            };
            let registry = connect(&server.connect_string()).await;
            let raw = raw(&server).await;
            let a = instance("orders", 1);
            let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            raw.mkdir("/msp/services/orders", &persistent)
                .await
                .expect("mkdir");
            raw.create(
                &registry.path_of(&a),
                &serde_json::to_vec(&a).expect("json"),
                &persistent,
            )
            .await
            .expect("create");
            raw.create("/msp/services/orders/broken", b"{not json", &persistent)
                .await
                .expect("create");
            // Valid JSON, but for another id than its znode's name.
            let other = instance("orders", 9);
            raw.create(
                "/msp/services/orders/misfiled",
                &serde_json::to_vec(&other).expect("json"),
                &persistent,
            )
            .await
            .expect("create");

            // Skipped, not an error, and counted.
            let mut watch = registry.watch(a.service());
            assert!(
                matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l == vec![a.clone()])
            );
            assert_eq!(
                registry.instances(a.service()).await.expect("list"),
                vec![a.clone()]
            );
            assert!(invalid() >= 2, "invalid znodes are counted");

            // An invalid update of a known instance removes it rather than
            // keep serving stale data.
            raw.set_data(&registry.path_of(&a), b"[]", None)
                .await
                .expect("set data");
            assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
            assert!(invalid() >= 1, "the invalid update is counted");

            // A valid one brings it back.
            raw.set_data(
                &registry.path_of(&a),
                &serde_json::to_vec(&a).expect("json"),
                None,
            )
            .await
            .expect("set data");
            assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == a));
        });
    });
}

#[tokio::test]
async fn deregister_by_id_is_undone_by_a_live_registration() {
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let registry = connect(&server.connect_string()).await;
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(2))
        .await
        .expect("register");
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 1));

    // An administrative removal: the process still holds its Registration,
    // which puts the instance back on its next heartbeat.
    registry.deregister(a.id()).await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == a));

    registration.deregister().await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    assert!(matches!(
        registry.deregister(a.id()).await,
        Err(RegistryError::NotFound(_))
    ));
}

#[tokio::test]
async fn connect_and_prefix_errors_are_typed() {
    assert!(matches!(
        ZooKeeperRegistry::connect("127.0.0.1:1")
            .await
            .map(drop),
        Err(e) if e.is_transient()
    ));
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let registry = connect(&server.connect_string()).await;
    for bad in ["", "relative", "/a//b", "/a/../b"] {
        assert!(
            matches!(
                registry.clone().with_prefix(bad),
                Err(RegistryError::Config(_))
            ),
            "{bad:?} accepted"
        );
    }
    let registry = registry.with_prefix("/team/a/").expect("prefix");
    assert_eq!(registry.prefix(), "/team/a");
}

#[tokio::test]
async fn a_restarted_process_replaces_the_znode_its_previous_session_left() {
    let Some(server) = PrivateZooKeeper::start() else {
        return;
    };
    let a = instance("orders", 1);
    let before = connect(&server.connect_string()).await;
    // The first process dies without deregistering: its session (TTL 30 s)
    // and znode stay until the server expires them.
    before
        .register(a.clone(), Duration::from_secs(30))
        .await
        .expect("register")
        .abandon();
    let raw = raw(&server).await;
    let path = before.path_of(&a);
    let old_owner = raw
        .check_stat(&path)
        .await
        .expect("exists")
        .expect("znode")
        .ephemeral_owner;

    // Its replacement registers the same instance at once, without waiting
    // 30 s for the old session to expire.
    let after = connect(&server.connect_string()).await;
    let registration = after
        .register(a.clone(), Duration::from_secs(30))
        .await
        .expect("register over the znode of the dead session");
    let stat = raw.check_stat(&path).await.expect("exists").expect("znode");
    assert_ne!(stat.ephemeral_owner, old_owner, "now in the new session");
    assert_eq!(after.instances(a.service()).await.expect("list"), vec![a]);
    assert_eq!(registration.status(), RegistrationStatus::Registered);
}
