//! EtcdRegistry against a real etcd: the shared one (MSP_ETCD_ENDPOINT) and
//! private ones this test starts, stops and restarts.
#![cfg(feature = "etcd")]

use futures_util::StreamExt;
use msp_core::testing::{Backend, PrivateEtcd, backend};
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::registry::{
    EtcdRegistry, RegistrationConfig, RegistrationStatus, Registry, ServiceView, WatchEvent,
    WatchStream,
};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(30);

fn unique_prefix(test: &str) -> String {
    format!("/msp-test/discovery/{test}-{}", InstanceId::random())
}

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

fn fast_config() -> RegistrationConfig {
    RegistrationConfig::builder()
        .retry(
            msp_core::backoff::Backoff::builder()
                .initial(Duration::from_millis(50))
                .max_delay(Duration::from_millis(500))
                .build()
                .expect("valid backoff"),
        )
        .build()
        .expect("valid registration config")
}

async fn shared(test: &str) -> Option<EtcdRegistry> {
    let url = backend(Backend::Etcd)?;
    let registry = EtcdRegistry::connect([url])
        .await
        .expect("connect")
        .with_prefix(unique_prefix(test))
        .expect("prefix")
        .with_registration_config(fast_config());
    Some(registry)
}

#[tokio::test]
async fn register_then_watch_sees_insert_and_remove() {
    let Some(registry) = shared("insert-remove").await else {
        return;
    };
    let a = instance("orders", 1);
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.is_empty()));

    let registration = registry
        .register(a.clone(), Duration::from_secs(10))
        .await
        .expect("register");
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == a));
    assert_eq!(
        registry.instances(a.service()).await.expect("list"),
        vec![a.clone()]
    );

    registration.deregister().await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    assert!(
        registry
            .instances(a.service())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn lease_expiry_after_heartbeats_stop_removes_the_instance() {
    let Some(registry) = shared("expiry").await else {
        return;
    };
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(2))
        .await
        .expect("register");
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l == vec![a.clone()]));

    // Heartbeats keep it through several TTLs…
    let mut status = registration.subscribe();
    let kept = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    assert!(
        kept.is_err(),
        "unexpected event while heartbeating: {kept:?}"
    );
    assert_eq!(*status.borrow_and_update(), RegistrationStatus::Registered);

    // …and once the process stops heartbeating, etcd expires the lease.
    registration.abandon();
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    assert!(
        registry
            .instances(a.service())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn registration_comes_back_after_its_lease_is_revoked() {
    let Some(registry) = shared("revoked").await else {
        return;
    };
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(3))
        .await
        .expect("register");
    let mut watch = registry.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 1));

    // Someone revokes the lease (an operator, or a restore from backup).
    let key = registry.key_of(&a);
    let mut client = registry.client();
    let lease = client.get(key, None).await.expect("get").kvs()[0].lease();
    client.lease_revoke(lease).await.expect("revoke");

    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    // The keep-alive sees TTL 0; the registration grants a new lease.
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == a));
    let mut status = registration.subscribe();
    within(
        "registered again",
        status.wait_for(|s| *s == RegistrationStatus::Registered),
    )
    .await
    .expect("status");
    assert_eq!(
        registry.instances(a.service()).await.expect("list"),
        vec![a]
    );
}

#[tokio::test]
async fn deregister_by_id_and_malformed_entries() {
    let Some(registry) = shared("malformed").await else {
        return;
    };
    let a = instance("orders", 1);
    let mut client = registry.client();
    client
        .put(
            registry.key_of(&a),
            serde_json::to_vec(&a).expect("json"),
            None,
        )
        .await
        .expect("put");
    let garbage_key = format!("{}/orders/broken", registry.prefix());
    client
        .put(garbage_key.clone(), "{not json", None)
        .await
        .expect("put");
    let mut watch = registry.watch(a.service());
    // The malformed entry is skipped, not an error.
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l == vec![a.clone()]));
    assert_eq!(
        registry.instances(a.service()).await.expect("list"),
        vec![a.clone()]
    );

    // A malformed update of a known entry removes it rather than keep
    // serving stale data.
    client
        .put(registry.key_of(&a), "[]", None)
        .await
        .expect("put");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));

    let b = instance("orders", 2);
    client
        .put(
            registry.key_of(&b),
            serde_json::to_vec(&b).expect("json"),
            None,
        )
        .await
        .expect("put");
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == b));
    registry.deregister(b.id()).await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == b.id()));
    assert!(matches!(
        registry.deregister(b.id()).await,
        Err(msp_discovery::registry::RegistryError::NotFound(_))
    ));
    client.delete(garbage_key, None).await.expect("cleanup");
}

// ---------------------------------------------------------------------------
// Tests on private etcd processes (msp_core::testing::PrivateEtcd).

#[tokio::test]
async fn etcd_restart_keeps_clients_serving_and_the_registration_returns() {
    let Some(mut etcd) = PrivateEtcd::start() else {
        return;
    };
    let registry = EtcdRegistry::connect([etcd.endpoint()])
        .await
        .expect("connect")
        .with_registration_config(fast_config())
        .with_watch_retry(
            msp_core::backoff::Backoff::builder()
                .initial(Duration::from_millis(50))
                .max_delay(Duration::from_millis(500))
                .build()
                .expect("valid backoff"),
        );
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

    etcd.kill();
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

    etcd.restart();
    // Nothing done by the application: the registration and the watch
    // recover on their own.
    within(
        "registration back",
        status.wait_for(|s| *s == RegistrationStatus::Registered),
    )
    .await
    .expect("status");
    let state = within("view fresh", view.wait_for(|s| !s.is_stale())).await;
    assert_eq!(&state.instances()[..], std::slice::from_ref(&a));
    // The raw watch resumed from its revision (no re-list was needed).
    loop {
        match next(&mut watch).await {
            WatchEvent::Resumed => break,
            WatchEvent::Added(i) => assert_eq!(i, a),
            other => panic!("expected the watch to resume, got {other:?}"),
        }
    }
    assert_eq!(
        registry.instances(a.service()).await.expect("list"),
        vec![a.clone()]
    );
    registration.deregister().await.expect("deregister");
    within("view empty", view.wait_for(|s| s.instances().is_empty())).await;
}

/// A TCP proxy the test can cut (drop every connection and refuse new
/// ones) and restore.
struct Proxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (open, mut rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        if !*rx.borrow() {
                            drop(inbound);
                            continue;
                        }
                        conns.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    changed = rx.changed() => {
                        if changed.is_err() { return; }
                        if !*rx.borrow_and_update() {
                            conns.abort_all();
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Proxy {
            addr,
            open,
            _task: task,
        }
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

#[tokio::test]
async fn compaction_while_disconnected_makes_the_watch_list_again() {
    let Some(etcd) = PrivateEtcd::start() else {
        return;
    };
    let proxy = Proxy::start(etcd.addr()).await;
    let prefix = unique_prefix("compaction");
    let watcher = EtcdRegistry::connect([format!("http://{}", proxy.addr)])
        .await
        .expect("connect")
        .with_prefix(&prefix)
        .expect("prefix")
        .with_watch_retry(
            msp_core::backoff::Backoff::builder()
                .initial(Duration::from_millis(50))
                .max_delay(Duration::from_millis(300))
                .build()
                .expect("valid backoff"),
        );
    let writer = EtcdRegistry::connect([etcd.endpoint()])
        .await
        .expect("connect")
        .with_prefix(&prefix)
        .expect("prefix");
    let mut client = writer.client();
    let (a, b, c) = (
        instance("orders", 1),
        instance("orders", 2),
        instance("orders", 3),
    );
    for i in [&a, &b] {
        client
            .put(writer.key_of(i), serde_json::to_vec(i).expect("json"), None)
            .await
            .expect("put");
    }
    let mut watch = watcher.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l.len() == 2));
    let view = ServiceView::new(&watcher, a.service().clone());
    within("view ready", view.ready()).await;

    proxy.set_open(false);
    assert!(matches!(next(&mut watch).await, WatchEvent::Stale(_)));
    within("view stale", view.wait_for(|s| s.is_stale())).await;

    // While the watcher is cut off: many revisions, including changes to
    // the watched service, then a compaction past all of them.
    client
        .delete(writer.key_of(&a), None)
        .await
        .expect("delete");
    let mut revision = 0;
    for n in 0..50 {
        let c2 = Instance::builder(c.service().clone(), c.addr())
            .id(c.id().clone())
            .metadata("n", n.to_string())
            .build()
            .expect("instance");
        let put = client
            .put(
                writer.key_of(&c2),
                serde_json::to_vec(&c2).expect("json"),
                None,
            )
            .await
            .expect("put");
        revision = put.header().expect("header").revision();
    }
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact");

    proxy.set_open(true);
    // The watch cannot resume from its compacted revision: it lists again
    // and sends a snapshot of the current state — and never claims to have
    // resumed with the old set first (etcd accepts a watch from a compacted
    // revision and cancels it only later).
    let snapshot = match next(&mut watch).await {
        WatchEvent::Snapshot(list) => list,
        other => panic!("expected a re-list snapshot, got {other:?}"),
    };
    let ids: BTreeSet<_> = snapshot.iter().map(|i| i.id().clone()).collect();
    assert_eq!(ids, BTreeSet::from([b.id().clone(), c.id().clone()]));
    let latest = snapshot
        .iter()
        .find(|i| i.id() == c.id())
        .and_then(|i| i.metadata().get("n").cloned());
    assert_eq!(latest.as_deref(), Some("49"));

    // The view goes from stale straight to the re-listed set: a fresh
    // (not stale) state never holds the deleted instance.
    let expected = BTreeSet::from([b.id().clone(), c.id().clone()]);
    let state = within(
        "view reconciled",
        view.wait_for(|s| {
            assert!(
                s.is_stale() || s.instances().iter().all(|i| i.id() != a.id()),
                "the view reported a fresh set with a deleted instance: {s:?}"
            );
            !s.is_stale()
        }),
    )
    .await;
    let ids: BTreeSet<_> = state.instances().iter().map(|i| i.id().clone()).collect();
    assert_eq!(ids, expected);

    // And the watch keeps working after the re-list.
    client
        .delete(writer.key_of(&b), None)
        .await
        .expect("delete");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == b.id()));
}

#[tokio::test]
async fn partition_longer_than_the_ttl_loses_the_lease_and_registers_again() {
    let Some(etcd) = PrivateEtcd::start() else {
        return;
    };
    let proxy = Proxy::start(etcd.addr()).await;
    let prefix = unique_prefix("partition");
    // The instance reaches etcd through the proxy; the observer directly.
    let registry = EtcdRegistry::connect([format!("http://{}", proxy.addr)])
        .await
        .expect("connect")
        .with_prefix(&prefix)
        .expect("prefix")
        .with_timeout(Duration::from_millis(500))
        .with_registration_config(fast_config());
    let observer = EtcdRegistry::connect([etcd.endpoint()])
        .await
        .expect("connect")
        .with_prefix(&prefix)
        .expect("prefix");
    let a = instance("orders", 1);
    let registration = registry
        .register(a.clone(), Duration::from_secs(2))
        .await
        .expect("register");
    let mut status = registration.subscribe();
    let mut watch = observer.watch(a.service());
    assert!(matches!(next(&mut watch).await, WatchEvent::Snapshot(l) if l == vec![a.clone()]));

    // Cut off for longer than the TTL: etcd expires the lease.
    proxy.set_open(false);
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
    within(
        "lease known lost",
        status.wait_for(|s| *s == RegistrationStatus::Lost),
    )
    .await
    .expect("status");

    // Reachable again: the registration puts the instance back by itself
    // under a new lease.
    proxy.set_open(true);
    assert!(matches!(next(&mut watch).await, WatchEvent::Added(i) if i == a));
    within(
        "registered again",
        status.wait_for(|s| *s == RegistrationStatus::Registered),
    )
    .await
    .expect("status");
    let mut client = observer.client();
    let lease = client
        .get(observer.key_of(&a), None)
        .await
        .expect("get")
        .kvs()
        .first()
        .map(|kv| kv.lease())
        .expect("the key is back");
    assert_ne!(lease, 0, "stored under a lease");
    registration.deregister().await.expect("deregister");
    assert!(matches!(next(&mut watch).await, WatchEvent::Removed(id) if &id == a.id()));
}
