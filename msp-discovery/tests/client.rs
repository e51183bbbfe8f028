//! DiscoveryClient against real loopback axum servers: balancing, typed
//! errors, outlier ejection and health checks moving traffic, consistent
//! hashing, Host handling and registry outages.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Router, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use msp_core::http::ToProblem;
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::balance::{BalanceConfig, BalanceConfigBuilder, EndpointSet, Strategy};
use msp_discovery::client::{DiscoveryClient, DiscoveryError, HashKey, TransportKind};
use msp_discovery::health::HealthCheck;
use msp_discovery::outlier::OutlierConfig;
use msp_discovery::registry::MemoryRegistry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::{Service, ServiceExt};

#[derive(Clone)]
struct Server {
    name: &'static str,
    failing: Arc<AtomicBool>,
    addr: SocketAddr,
}

async fn server(name: &'static str) -> Server {
    let failing = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = (name, failing.clone());
    let app = Router::new()
        .route(
            "/",
            get(
                |State((name, failing)): State<(&'static str, Arc<AtomicBool>)>| async move {
                    if failing.load(Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, name)
                    } else {
                        (StatusCode::OK, name)
                    }
                },
            ),
        )
        .route(
            "/health",
            get(
                |State((_, failing)): State<(&'static str, Arc<AtomicBool>)>| async move {
                    if failing.load(Ordering::SeqCst) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            }),
        )
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        name,
        failing,
        addr,
    }
}

fn register(registry: &MemoryRegistry, s: &Server) {
    let i = Instance::builder(ServiceName::new("orders").unwrap(), s.addr)
        .id(InstanceId::new(s.name).unwrap())
        .build()
        .unwrap();
    registry.insert(i).unwrap();
}

fn cfg(strategy: Strategy) -> BalanceConfigBuilder {
    BalanceConfig::builder().strategy(strategy)
}

fn get_req(uri: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(uri).body(Empty::new()).unwrap()
}

/// Sends one request; returns (status, body) or the error.
async fn send(
    client: &mut DiscoveryClient<Empty<Bytes>>,
    req: http::Request<Empty<Bytes>>,
) -> Result<(StatusCode, String), DiscoveryError> {
    let res = client.ready().await?.call(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).unwrap()))
}

async fn split(client: &mut DiscoveryClient<Empty<Bytes>>, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let (status, body) = send(client, get_req("http://orders/")).await.unwrap();
        *m.entry(format!("{body}:{}", status.as_u16())).or_default() += 1;
    }
    m
}

async fn wait(set: &EndpointSet, pred: impl FnMut(&msp_discovery::balance::Snapshot) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), set.wait_for(pred))
        .await
        .expect("state reached within 20 s");
}

#[tokio::test]
async fn balances_across_two_real_servers() {
    let (a, b) = (server("a").await, server("b").await);
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    register(&registry, &b);
    let mut client = DiscoveryClient::builder(registry)
        .balance(cfg(Strategy::RoundRobin).build().unwrap())
        .build();
    let m = split(&mut client, 100).await;
    assert_eq!(m["a:200"], 50);
    assert_eq!(m["b:200"], 50);

    // Clones share the pool and the rotation.
    let mut clone = client.clone();
    let m = split(&mut clone, 10).await;
    assert_eq!((m["a:200"], m["b:200"]), (5, 5));
}

#[tokio::test]
async fn p2c_default_serves_both() {
    let (a, b) = (server("a").await, server("b").await);
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    register(&registry, &b);
    let mut client = DiscoveryClient::builder(registry).build();
    let m = split(&mut client, 200).await;
    assert_eq!(m.values().sum::<usize>(), 200);
    assert!(m.contains_key("a:200") && m.contains_key("b:200"), "{m:?}");
}

#[tokio::test]
async fn typed_errors_for_missing_and_unknown_services() {
    let registry = MemoryRegistry::new();
    let mut client = DiscoveryClient::builder(registry.clone())
        .resolve_timeout(Duration::from_secs(5))
        .build();
    let err = send(&mut client, get_req("http://payments/x"))
        .await
        .unwrap_err();
    assert!(err.is_no_instances(), "{err}");
    assert_eq!(err.status_code(), StatusCode::SERVICE_UNAVAILABLE);

    let err = send(&mut client, get_req("/relative")).await.unwrap_err();
    assert!(
        matches!(err, DiscoveryError::UnknownService { .. }),
        "{err}"
    );

    let mut only = DiscoveryClient::builder(registry)
        .only_services(["orders".parse().unwrap()])
        .build();
    let err = send(&mut only, get_req("http://payments/"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::UnknownService { authority } if authority == "payments"));
}

#[tokio::test]
async fn registry_unreachable_at_first_use_is_no_instances_after_the_timeout() {
    let registry = MemoryRegistry::new();
    registry.set_available(false);
    let mut client = DiscoveryClient::builder(registry)
        .resolve_timeout(Duration::from_millis(200))
        .build();
    let err = send(&mut client, get_req("http://orders/"))
        .await
        .unwrap_err();
    assert!(err.is_no_instances());
}

#[tokio::test]
async fn a_killed_instance_is_a_transport_error_then_ejected() {
    let (a, b) = (server("a").await, server("b").await);
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    // "b" is registered but nothing listens there any more.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let ghost = Server {
        addr: dead_addr,
        ..b
    };
    register(&registry, &ghost);
    let mut client = DiscoveryClient::builder(registry)
        .balance(
            cfg(Strategy::RoundRobin)
                .outlier_detection(
                    OutlierConfig::builder()
                        .consecutive_failures(2)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build();
    let mut failures = 0;
    for _ in 0..20 {
        match send(&mut client, get_req("http://orders/")).await {
            Ok((StatusCode::OK, body)) => assert_eq!(body, "a"),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => {
                // Nothing listens: the request was not sent (safe to retry),
                // and the answer is 503, as for an unavailable service.
                assert!(e.is_connect(), "{e}");
                assert!(
                    matches!(
                        e,
                        DiscoveryError::Transport {
                            kind: TransportKind::Connect,
                            ..
                        }
                    ),
                    "{e:?}"
                );
                assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(e.to_problem().code(), "upstream_unavailable");
                failures += 1;
            }
        }
    }
    assert_eq!(failures, 2, "bounded by the consecutive-failures threshold");
}

#[tokio::test]
async fn outlier_ejection_moves_traffic_and_brings_it_back() {
    let (a, b) = (server("a").await, server("b").await);
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    register(&registry, &b);
    let outlier = OutlierConfig::builder()
        .consecutive_failures(3)
        .without_failure_rate()
        .base_ejection_time(Duration::from_secs(2))
        .max_ejected_percent(50)
        .build()
        .unwrap();
    let mut client = DiscoveryClient::builder(registry)
        .balance(
            cfg(Strategy::RoundRobin)
                .outlier_detection(outlier)
                .build()
                .unwrap(),
        )
        .build();
    let _ = split(&mut client, 2).await;
    let set = client.endpoints(&"orders".parse().unwrap()).unwrap();

    a.failing.store(true, Ordering::SeqCst);
    let m = split(&mut client, 40).await;
    assert_eq!(m["a:500"], 3, "ejected after 3 failures: {m:?}");
    assert_eq!(m["b:200"], 37);
    assert_eq!(set.snapshot().ejected(), 1);

    // Recovers; after the ejection time it gets traffic again.
    a.failing.store(false, Ordering::SeqCst);
    wait(&set, |s| s.ejected() == 0).await;
    let m = split(&mut client, 10).await;
    assert_eq!((m["a:200"], m["b:200"]), (5, 5));

    // Both fail: max ejected percent (50 % of 2 = 1) keeps one in the pool.
    a.failing.store(true, Ordering::SeqCst);
    b.failing.store(true, Ordering::SeqCst);
    let m = split(&mut client, 20).await;
    assert_eq!(m.values().sum::<usize>(), 20);
    assert_eq!(set.snapshot().ejected(), 1);
    assert_eq!(set.snapshot().pool_len(), 1);
}

#[tokio::test]
async fn health_checks_move_traffic() {
    let (a, b) = (server("a").await, server("b").await);
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    register(&registry, &b);
    let mut client = DiscoveryClient::builder(registry)
        .balance(
            cfg(Strategy::RoundRobin)
                .without_outlier_detection()
                .build()
                .unwrap(),
        )
        .health_check(
            HealthCheck::http("/health")
                .interval(Duration::from_millis(20))
                .jitter(0.0)
                .unhealthy_threshold(1)
                .healthy_threshold(1),
        )
        .build();
    let set = client.resolve(&"orders".parse().unwrap()).await.unwrap();
    let id_a = InstanceId::new("a").unwrap();

    a.failing.store(true, Ordering::SeqCst);
    wait(&set, |s| s.get(&id_a).is_some_and(|e| !e.is_healthy())).await;
    let m = split(&mut client, 10).await;
    assert_eq!(m.get("b:200"), Some(&10), "{m:?}");

    a.failing.store(false, Ordering::SeqCst);
    wait(&set, |s| s.get(&id_a).is_some_and(|e| e.is_healthy())).await;
    let m = split(&mut client, 10).await;
    assert_eq!((m["a:200"], m["b:200"]), (5, 5));
}

#[tokio::test]
async fn consistent_hash_by_header_and_extension_is_sticky() {
    let (a, b, c) = (server("a").await, server("b").await, server("c").await);
    let registry = MemoryRegistry::new();
    for s in [&a, &b, &c] {
        register(&registry, s);
    }
    let mut client = DiscoveryClient::builder(registry)
        .balance(cfg(Strategy::consistent_hash()).build().unwrap())
        .hash_header(http::HeaderName::from_static("x-user"))
        .build();
    let mut homes = std::collections::BTreeSet::new();
    for user in 0..30 {
        let req = || {
            http::Request::get("http://orders/")
                .header("x-user", format!("user-{user}"))
                .body(Empty::new())
                .unwrap()
        };
        let (_, first) = send(&mut client, req()).await.unwrap();
        for _ in 0..3 {
            assert_eq!(send(&mut client, req()).await.unwrap().1, first);
        }
        let mut by_ext = get_req("http://orders/");
        by_ext
            .extensions_mut()
            .insert(HashKey(Bytes::from(format!("user-{user}"))));
        assert_eq!(send(&mut client, by_ext).await.unwrap().1, first);
        homes.insert(first);
    }
    assert_eq!(homes.len(), 3, "30 users spread over the 3 servers");
}

#[tokio::test]
async fn host_header_keeps_the_service_name() {
    let a = server("a").await;
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    let mut client = DiscoveryClient::builder(registry).build();
    let (_, host) = send(&mut client, get_req("http://orders/host"))
        .await
        .unwrap();
    assert_eq!(host, "orders");
}

#[tokio::test]
async fn keeps_routing_while_the_registry_is_down() {
    let (a, b) = (server("a").await, server("b").await);
    let registry = MemoryRegistry::new();
    register(&registry, &a);
    register(&registry, &b);
    let mut client = DiscoveryClient::builder(registry.clone())
        .balance(cfg(Strategy::RoundRobin).build().unwrap())
        .build();
    let _ = split(&mut client, 2).await;
    registry.set_available(false);
    let m = split(&mut client, 10).await;
    assert_eq!((m["a:200"], m["b:200"]), (5, 5));
}
