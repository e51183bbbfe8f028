//! tower `Discover` over a registry watch: changes flow, registry failures
//! never surface as errors, and `tower::balance` keeps working through an
//! outage.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use futures_util::StreamExt;
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::discover::ServiceDiscover;
use msp_discovery::registry::{MemoryRegistry, Registry};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{Service, ServiceExt, service_fn};

fn inst(id: &str, port: u16) -> Instance {
    Instance::builder(
        ServiceName::new("echo").unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .id(InstanceId::new(id).unwrap())
    .build()
    .unwrap()
}

fn make(i: &Instance) -> u16 {
    i.addr().port()
}

async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a change within 5 s")
        .expect("the discover never ends")
}

/// Nothing arrives within a short wait (the stream is pending).
async fn quiet<S: futures_core::Stream + Unpin>(s: &mut S) -> bool {
    tokio::time::timeout(Duration::from_millis(200), s.next())
        .await
        .is_err()
}

#[tokio::test]
async fn inserts_and_removes_follow_the_registry() {
    let registry = MemoryRegistry::new();
    registry.insert(inst("a", 1)).unwrap();
    registry.insert(inst("b", 2)).unwrap();
    let mut d = ServiceDiscover::from_registry(&registry, "echo".parse().unwrap(), make);

    let mut inserted = BTreeSet::new();
    for _ in 0..2 {
        match next(&mut d).await {
            Ok(Change::Insert(id, port)) => {
                inserted.insert((id.to_string(), port));
            }
            other => panic!("expected an insert, got {other:?}"),
        }
    }
    assert_eq!(
        inserted,
        BTreeSet::from([("a".to_owned(), 1), ("b".to_owned(), 2)])
    );

    registry
        .deregister(&InstanceId::new("a").unwrap())
        .await
        .unwrap();
    assert!(matches!(next(&mut d).await, Ok(Change::Remove(id)) if id.as_str() == "a"));

    // A changed address is re-inserted under the same key.
    registry.insert(inst("b", 3)).unwrap();
    assert!(matches!(next(&mut d).await, Ok(Change::Insert(id, 3)) if id.as_str() == "b"));
    assert!(quiet(&mut d).await);
}

#[tokio::test]
async fn a_registry_outage_is_not_an_error_and_keeps_the_set() {
    let registry = MemoryRegistry::new();
    registry.insert(inst("a", 1)).unwrap();
    registry.insert(inst("b", 2)).unwrap();
    let mut d = ServiceDiscover::from_registry(&registry, "echo".parse().unwrap(), make);
    let _ = next(&mut d).await;
    let _ = next(&mut d).await;

    registry.set_available(false);
    d.view().wait_for(|s| s.is_stale()).await;
    // Stale: no error, no removal: the stream just stays quiet.
    assert!(quiet(&mut d).await);
    assert_eq!(d.view().snapshot().len(), 2);

    // While it is down, "b" expires; once back, the fresh snapshot says so.
    registry.expire(&InstanceId::new("b").unwrap());
    registry.set_available(true);
    assert!(matches!(next(&mut d).await, Ok(Change::Remove(id)) if id.as_str() == "b"));
    assert!(quiet(&mut d).await);
}

#[tokio::test]
async fn tower_balance_keeps_serving_through_an_outage() {
    let registry = MemoryRegistry::new();
    registry.insert(inst("a", 7001)).unwrap();
    registry.insert(inst("b", 7002)).unwrap();
    let discover = ServiceDiscover::from_registry(&registry, "echo".parse().unwrap(), |i| {
        let addr = i.addr();
        service_fn(move |_: ()| async move { Ok::<SocketAddr, Infallible>(addr) })
    });
    let mut balance = Balance::new(PendingRequestsDiscover::new(
        discover,
        CompleteOnResponse::default(),
    ));
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        seen.insert(
            balance
                .ready()
                .await
                .unwrap()
                .call(())
                .await
                .unwrap()
                .port(),
        );
    }
    assert_eq!(seen, BTreeSet::from([7001, 7002]));

    registry.set_available(false);
    for _ in 0..50 {
        // `poll_ready` would fail here if discovery surfaced the outage.
        let port = balance
            .ready()
            .await
            .unwrap()
            .call(())
            .await
            .unwrap()
            .port();
        assert!(port == 7001 || port == 7002);
    }
}

#[cfg(feature = "tonic")]
async fn recv<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a change within 5 s")
        .expect("the feed is running")
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn tonic_feed_sends_endpoints_and_removals() {
    use msp_discovery::registry::ServiceView;
    use msp_discovery::tonic::TonicDiscovery;
    use tonic::transport::channel::Change as TonicChange;

    let registry = MemoryRegistry::new();
    registry.insert(inst("a", 50051)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let view = ServiceView::new(&registry, "echo".parse().unwrap());
    let _feed = TonicDiscovery::spawn(view, tx);

    match recv(&mut rx).await {
        TonicChange::Insert(id, endpoint) => {
            assert_eq!(id.as_str(), "a");
            assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:50051/");
        }
        other => panic!("expected an insert, got {other:?}"),
    }
    registry.set_available(false); // an outage sends nothing
    registry.set_available(true);
    registry
        .deregister(&InstanceId::new("a").unwrap())
        .await
        .unwrap();
    assert!(matches!(recv(&mut rx).await, TonicChange::Remove(id) if id.as_str() == "a"));
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn tonic_balance_channel_builds() {
    let registry = MemoryRegistry::new();
    registry.insert(inst("a", 50051)).unwrap();
    let (_channel, _feed) =
        msp_discovery::tonic::balance_channel(&registry, "echo".parse().unwrap(), 4);
}
