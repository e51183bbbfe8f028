//! Upstream resilience: one breaker per upstream service, retries on
//! another instance, outlier ejection.

mod common_gw;

use common_gw::{Http, backend, failing_backend, gateway};
use http::StatusCode;
use msp_resilience::circuit_breaker::State;

#[tokio::test]
async fn one_upstream_breaker_opening_leaves_the_others_untouched() {
    let a = failing_backend("a").await;
    let b = backend("b").await;
    let yaml = format!(
        r#"
routes:
  - path: "/a/*"
    service: a
    breaker:
      consecutive_failures: 3
      open_duration: 60s
  - path: "/also-a/*"
    service: a
  - path: "/b/*"
    service: b
services:
  a:
    instances: ["{}"]
  b:
    instances: ["{}"]
"#,
        a.addr, b.addr
    );
    let (gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);

    for _ in 0..3 {
        assert_eq!(
            http.get("/a/x").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(gw.breaker("a").expect("a").state(), State::Open);

    // Open: answered at the gateway, on every route to service a.
    let res = http.get("/a/x").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers["content-type"], "application/problem+json");
    let res = http.get("/also-a/x").await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the breaker is the service's"
    );
    assert_eq!(a.hits(), 3);

    // Service b is untouched.
    for _ in 0..5 {
        assert_eq!(http.get("/b/x").await.body, "b GET /b/x");
    }
    assert_eq!(gw.breaker("b").expect("b").state(), State::Closed);
}

#[tokio::test]
async fn a_killed_instance_gets_the_get_retried_on_another_and_is_ejected() {
    let mut x = backend("x").await;
    let y = backend("y").await;
    let yaml = format!(
        r#"
routes:
  - path: "/s/*"
    service: s
    retry:
      max_attempts: 3
      backoff:
        initial: 5ms
        max_delay: 20ms
services:
  s:
    instances: ["{}", "{}"]
    balancer: round_robin
    outlier:
      consecutive_failures: 1
"#,
        x.addr, y.addr
    );
    let (gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    let mut served = Vec::new();
    for _ in 0..2 {
        served.push(http.get("/s/warm").await.body);
    }
    served.sort();
    assert_eq!(
        served,
        ["x GET /s/warm", "y GET /s/warm"],
        "both instances serve"
    );

    x.kill().await;
    for i in 0..4 {
        let res = http.get("/s/after").await;
        assert_eq!(res.status, StatusCode::OK, "request {i} was retried on y");
        assert_eq!(res.body, "y GET /s/after");
    }
    let endpoints = gw.endpoints("s").expect("service s").snapshot();
    let dead = endpoints
        .endpoints()
        .iter()
        .find(|e| e.addr() == x.addr)
        .expect("x is still registered");
    assert!(dead.is_ejected(), "the killed instance is ejected");
    assert_eq!(endpoints.ejected(), 1);

    // The admin view says the same.
    let up = gw.upstreams();
    let s = up.iter().find(|u| u.service == "s").expect("s");
    assert!(s.instances.iter().any(|i| i.ejected));
}

/// `registry: etcd`: an instance that registers itself in etcd is routed to
/// without being listed in the config.
#[cfg(feature = "etcd")]
#[tokio::test]
async fn with_the_etcd_registry_a_self_registered_instance_is_routed_to() {
    use msp_core::testing::{Backend, backend as etcd_backend};
    use msp_discovery::{EtcdRegistry, Registry};

    let Some(endpoint) = etcd_backend(Backend::Etcd) else {
        return;
    };
    let prefix = format!("/msp-gateway-test/{}/", std::process::id());
    let inventory = backend("inventory").await;
    let registry = EtcdRegistry::connect([endpoint.as_str()])
        .await
        .expect("etcd client")
        .with_prefix(&prefix)
        .expect("prefix");
    let me = msp_core::Instance::parse("inventory", &inventory.addr.to_string()).expect("instance");
    let _registration = registry
        .register(me, std::time::Duration::from_secs(10))
        .await
        .expect("registered");

    let yaml = format!(
        r#"
registry:
  etcd:
    endpoints: ["{endpoint}"]
    prefix: "{prefix}"
routes:
  - path: "/inventory/*"
    service: inventory
"#
    );
    let (_gw, addr) = gateway(&yaml).await;
    let res = Http::new(addr).get("/inventory/sku-1").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "inventory GET /inventory/sku-1");
}

#[tokio::test]
async fn a_reload_keeps_the_breaker_of_an_unchanged_service() {
    let a = failing_backend("a").await;
    let b = backend("b").await;
    let config = |extra: &str| {
        format!(
            r#"
routes:
  - path: "/a/*"
    service: a
    breaker:
      consecutive_failures: 2
      open_duration: 60s
{extra}
services:
  a:
    instances: ["{}"]
  b:
    instances: ["{}"]
"#,
            a.addr, b.addr
        )
    };
    let (gw, addr) = gateway(&config("")).await;
    let http = Http::new(addr);
    for _ in 0..2 {
        http.get("/a/x").await;
    }
    assert_eq!(gw.breaker("a").expect("a").state(), State::Open);

    let v2 = msp_gateway::config::GatewayConfig::from_yaml(
        &config("  - path: \"/b/*\"\n    service: b"),
        "v2",
    )
    .expect("v2");
    gw.reload(v2).await.expect("reload");
    assert_eq!(
        gw.breaker("a").expect("a").state(),
        State::Open,
        "a reload does not reset the breaker of a service whose settings did not change"
    );
    assert_eq!(
        http.get("/a/x").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(http.get("/b/x").await.body, "b GET /b/x");
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn a_weighted_split_sends_each_service_its_share() {
    let stable = backend("stable").await;
    let canary = backend("canary").await;
    let yaml = format!(
        r#"
routes:
  - path: "/api/*"
    split:
      - service: stable
        weight: 3
      - service: canary
        weight: 1
services:
  stable:
    instances: ["{}"]
  canary:
    instances: ["{}"]
"#,
        stable.addr, canary.addr
    );
    let (_gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    for _ in 0..40 {
        assert_eq!(http.get("/api/x").await.status, StatusCode::OK);
    }
    assert_eq!((stable.hits(), canary.hits()), (30, 10));
}

#[tokio::test]
async fn a_mirror_gets_a_copy_of_its_share_of_requests_and_the_client_only_the_primary_answer() {
    let primary = backend("primary").await;
    let mut shadow = backend("shadow").await;
    let yaml = format!(
        r#"
routes:
  - path: "/api/*"
    service: primary
    mirror:
      service: shadow
      percent: 50
services:
  primary:
    instances: ["{}"]
  shadow:
    instances: ["{}"]
"#,
        primary.addr, shadow.addr
    );
    let (_gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    // `/slow` paths are reported by the backend when they arrive; the
    // primary is let through at once, the shadow holds its copies.
    primary.release.add_permits(4);
    for _ in 0..4 {
        let res = http.get("/api/x/slow").await;
        assert_eq!(res.body, "primary GET /api/x/slow");
    }
    for _ in 0..2 {
        let copy = tokio::time::timeout(common_gw::BOUND, shadow.arrived.recv())
            .await
            .expect("a mirrored copy arrives");
        assert_eq!(copy.as_deref(), Some("/api/x/slow"));
    }
    assert!(
        shadow.arrived.try_recv().is_err(),
        "50 % of 4 requests is 2 copies"
    );
    shadow.release.add_permits(2);
}

/// `Gateway::with_registry`: the gateway follows the registry the services
/// register themselves in — a new registration is routed to, and a
/// deregistered instance leaves the balancer (no static instances).
#[tokio::test]
async fn with_an_external_registry_the_gateway_follows_registrations() {
    use msp_discovery::{MemoryRegistry, Registry};

    let x = backend("x").await;
    let y = backend("y").await;
    let registry = MemoryRegistry::new();
    let instance = |addr: std::net::SocketAddr| {
        msp_core::Instance::parse("s", &addr.to_string()).expect("instance")
    };
    let ttl = std::time::Duration::from_secs(30);
    let rx = registry.register(instance(x.addr), ttl).await.expect("x");
    let config = msp_gateway::config::GatewayConfig::from_yaml(
        "routes:\n  - path: \"/s/*\"\n    service: s\nservices:\n  s: {}\n",
        "inline",
    )
    .expect("config");
    let gw = msp_gateway::Gateway::with_registry(config, registry.clone())
        .await
        .expect("gateway");
    let endpoints = gw.endpoints("s").expect("service s");
    let mut changes = endpoints.subscribe();
    wait_for(&endpoints, &mut changes, 1).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn({
        let gw = gw.clone();
        let shutdown = msp_core::shutdown::Shutdown::new();
        async move { gw.serve_with_shutdown(listener, &shutdown).await }
    });
    let http = Http::new(addr);
    assert_eq!(http.get("/s/1").await.body, "x GET /s/1");

    // y registers, x deregisters: only y serves.
    let ry = registry.register(instance(y.addr), ttl).await.expect("y");
    wait_for(&endpoints, &mut changes, 2).await;
    rx.deregister().await.expect("x deregistered");
    wait_for(&endpoints, &mut changes, 1).await;
    for i in 0..3 {
        assert_eq!(
            http.get(&format!("/s/{i}")).await.body,
            format!("y GET /s/{i}")
        );
    }

    // Static instances next to an external registry are a load error.
    let with_statics = msp_gateway::config::GatewayConfig::from_yaml(
        &format!(
            "routes:\n  - path: \"/s/*\"\n    service: s\nservices:\n  s:\n    instances: [\"{}\"]\n",
            x.addr
        ),
        "inline",
    )
    .expect("config");
    let err = msp_gateway::Gateway::with_registry(with_statics, registry.clone())
        .await
        .expect_err("statics refused");
    assert!(err.to_string().contains("external registry"), "{err}");
    drop(ry);
}

/// Waits (bounded) until `endpoints` holds `n` instances.
async fn wait_for(
    endpoints: &msp_discovery::EndpointSet,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    n: usize,
) {
    tokio::time::timeout(common_gw::BOUND, async {
        while endpoints.snapshot().endpoints().len() != n {
            changes.changed().await.expect("endpoints alive");
        }
    })
    .await
    .expect("the registry change reaches the gateway");
}
