//! `service_defaults:`: a gateway-wide retry / outlier / timeout every
//! service gets unless it sets the field itself.

mod common_gw;

use common_gw::{Http, backend, gateway};
use http::StatusCode;
use msp_gateway::config::{GatewayConfig, ProblemKind};
use std::net::SocketAddr;

/// An address nothing listens on: connecting to it is refused.
async fn refusing_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// Routes `/a/*` to `a` and `/b/*` to `b`, both round robin over a dead
/// and a live instance; `defaults` is the `service_defaults` block, `b_own`
/// extra lines under `b`.
fn config(defaults: &str, dead: SocketAddr, live: SocketAddr, b_own: &str) -> String {
    format!(
        r#"
service_defaults:
{defaults}
routes:
  - {{ path: "/a/*", service: a }}
  - {{ path: "/b/*", service: b }}
services:
  a:
    instances: ["{dead}", "{live}"]
    balancer: round_robin
  b:
    instances: ["{dead}", "{live}"]
    balancer: round_robin
{b_own}
"#
    )
}

const DEFAULT_RETRY: &str =
    "  retry: { max_attempts: 2, backoff: { initial: 1ms, max_delay: 1ms } }";

/// Sends `n` GETs under `prefix`; the number answered 503.
async fn failures(http: &Http, prefix: &str, n: usize) -> usize {
    let mut failed = 0;
    for i in 0..n {
        let res = http.get(&format!("{prefix}/{i}")).await;
        if res.status == StatusCode::SERVICE_UNAVAILABLE {
            failed += 1;
        } else {
            assert_eq!(res.status, StatusCode::OK, "{prefix}/{i}: {}", res.body);
        }
    }
    failed
}

#[tokio::test]
async fn the_default_retry_applies_to_a_service_without_its_own_and_its_own_wins() {
    let dead = refusing_addr().await;
    let live = backend("live").await;
    // `b` turns retries off for itself. Four requests each: below the
    // built-in outlier ejection's five failures in a row.
    let yaml = config(
        DEFAULT_RETRY,
        dead,
        live.addr,
        "    retry: { max_attempts: 1 }",
    );
    let (gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    assert_eq!(failures(&http, "/a", 4).await, 0, "a: the default retry");
    assert_eq!(
        failures(&http, "/b", 4).await,
        2,
        "b: its own retry (none) wins: every other request hits the dead instance"
    );
    let retries = |name: &str| {
        let u = gw.upstreams().into_iter().find(|u| u.service == name);
        u.expect("service").retries
    };
    assert!(retries("a") >= 1);
    assert_eq!(retries("b"), 0);
}

#[tokio::test]
async fn the_default_outlier_ejection_applies() {
    let dead = refusing_addr().await;
    let live = backend("live").await;
    // No retry: the first request to the dead instance fails and ejects it
    // (one failure in a row, the built-in needs five); the rest succeed.
    let yaml = config(
        "  outlier: { consecutive_failures: 1, base_ejection_time: 60s }",
        dead,
        live.addr,
        "",
    );
    let (gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    assert_eq!(
        failures(&http, "/a", 6).await,
        1,
        "ejected after one failure"
    );
    let a = gw.upstreams().into_iter().find(|u| u.service == "a");
    let a = a.expect("service a");
    let ejected: Vec<_> = a.instances.iter().filter(|i| i.ejected).collect();
    assert_eq!(ejected.len(), 1, "{:?}", a.instances);
    assert_eq!(ejected[0].addr, dead.to_string());
}

#[tokio::test]
async fn a_bad_default_is_a_typed_error_naming_service_defaults_and_its_line() {
    let yaml = "routes: []\nservice_defaults:\n  connect_timeout: 1s\n  retry: { max_attempts: 2, per_try_timeout: 500ms }\nservices:\n  a: { instances: [\"127.0.0.1:9\"] }\n";
    let err = GatewayConfig::from_yaml(yaml, "gw.yaml").expect_err("rejected");
    let p = &err.problems()[0];
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(p.kind(), ProblemKind::Invalid);
    assert_eq!(p.field(), "service_defaults.retry.per_try_timeout");
    assert_eq!(p.line(), Some(4), "{err}");

    let zero = GatewayConfig::from_yaml("service_defaults:\n  connect_timeout: 0s\n", "gw.yaml");
    let zero = zero.expect_err("rejected");
    assert_eq!(
        zero.problems()[0].field(),
        "service_defaults.connect_timeout"
    );
    assert_eq!(zero.problems()[0].line(), Some(2));

    // A default retry against a service's own connect timeout names the
    // service's field.
    let mixed = "service_defaults:\n  retry: { max_attempts: 2, per_try_timeout: 2s }\nservices:\n  a:\n    connect_timeout: 3s\n";
    let mixed = GatewayConfig::from_yaml(mixed, "gw.yaml").expect_err("rejected");
    assert_eq!(mixed.problems()[0].field(), "services.a.connect_timeout");
    assert_eq!(mixed.problems()[0].line(), Some(5), "{mixed}");

    let unknown = GatewayConfig::from_yaml("service_defaults:\n  instances: []\n", "gw.yaml");
    let unknown = unknown.expect_err("rejected");
    assert_eq!(unknown.problems()[0].kind(), ProblemKind::Parse);
    assert_eq!(unknown.problems()[0].line(), Some(2), "{unknown}");
}

#[tokio::test]
async fn a_reload_changes_the_default() {
    let dead = refusing_addr().await;
    let live = backend("live").await;
    let (gw, addr) = gateway(&config("  h2c: false", dead, live.addr, "")).await;
    let http = Http::new(addr);
    assert_eq!(failures(&http, "/a", 2).await, 1, "no retry yet");

    let with_retry = config(DEFAULT_RETRY, dead, live.addr, "");
    let new = GatewayConfig::from_yaml(&with_retry, "reload.yaml").expect("config");
    gw.reload(new).await.expect("reload");
    assert_eq!(
        failures(&http, "/a", 2).await,
        0,
        "the reloaded default retry"
    );
}

#[test]
fn defaults_from_the_builder_equal_the_yaml_and_round_trip() {
    use msp_gateway::config::{ServiceConfig, ServiceDefaults};
    use std::time::Duration;
    let addr: SocketAddr = "127.0.0.1:9001".parse().expect("ok");
    let yaml = GatewayConfig::from_yaml(
        "service_defaults: { connect_timeout: 3s }\nservices:\n  a: { instances: [\"127.0.0.1:9001\"] }\n  b: { instances: [\"127.0.0.1:9001\"], connect_timeout: 1s }\n",
        "gw.yaml",
    )
    .expect("ok");
    let code = GatewayConfig::builder()
        .service_defaults(ServiceDefaults::new().connect_timeout(Duration::from_secs(3)))
        .service("a", ServiceConfig::new([addr]))
        // Its own 1 s (the built-in value) still wins over the default.
        .service(
            "b",
            ServiceConfig::new([addr]).connect_timeout(Duration::from_secs(1)),
        )
        .build()
        .expect("ok");
    assert_eq!(yaml, code);
    assert_eq!(code.services()["a"].connect_timeout, Duration::from_secs(3));
    assert_eq!(code.services()["b"].connect_timeout, Duration::from_secs(1));
    assert_eq!(
        code.unlisted_service().connect_timeout,
        Duration::from_secs(3)
    );
    // Written out and read back: the same inheritance.
    let text = serde_json::to_string(&code).expect("ok");
    let back: GatewayConfig = serde_json::from_str(&text).expect("ok");
    assert_eq!(back, code, "{text}");
    assert_eq!(back.services()["b"].connect_timeout, Duration::from_secs(1));
}
