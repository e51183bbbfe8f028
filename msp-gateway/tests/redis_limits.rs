//! `rate_limit_store: {redis: …}`: two gateways sharing one Redis (and key
//! prefix) enforce one limit between them, exactly. Needs Redis on
//! 127.0.0.1:6379 (`MSP_REDIS_URL`); skipped when absent.
#![cfg(feature = "redis")]

mod common_gw;

use bytes::Bytes;
use common_gw::{BOUND, backend};
use http::StatusCode;
use http_body_util::Empty;
use msp_core::testing::{Backend, backend as redis_backend};
use msp_gateway::Gateway;
use msp_gateway::config::GatewayConfig;
use std::net::SocketAddr;
use tower::ServiceExt;

/// A key prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("msp-test:gateway:{test}:{}:{nanos}", std::process::id())
}

/// One GET as if from `client`, answered by `gateway`.
async fn get(gateway: &Gateway, client: &str, path: &str) -> (StatusCode, http::HeaderMap) {
    let mut req = http::Request::get(path)
        .header("host", "gateway.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let peer: SocketAddr = client.parse().expect("client address");
    req.extensions_mut().insert(peer);
    let res = tokio::time::timeout(BOUND, gateway.clone().oneshot(req))
        .await
        .expect("answer in time")
        .expect("infallible");
    (res.status(), res.headers().clone())
}

async fn two_gateways(yaml: &str) -> (Gateway, Gateway) {
    let config = GatewayConfig::from_yaml(yaml, "redis.yaml").expect("valid config");
    let a = Gateway::from_config(config.clone())
        .await
        .expect("gateway a");
    let b = Gateway::from_config(config).await.expect("gateway b");
    (a, b)
}

#[tokio::test]
async fn two_gateways_share_one_per_client_limit_through_redis() {
    let Some(url) = redis_backend(Backend::Redis) else {
        return;
    };
    let users = backend("user-service").await;
    let yaml = format!(
        r#"
rate_limit_store:
  redis: {{ url: "{url}", prefix: "{}", on_error: fail_closed }}
routes:
  - path: "/api/users/*"
    service: user-service
    rate_limit: 5/hour
    rate_limit_by: ip
  - path: "/api/all/*"
    service: user-service
    rate_limit: 3/hour
services:
  user-service: {{ instances: ["{}"] }}
"#,
        unique_prefix("per-client"),
        users.addr
    );
    let (a, b) = two_gateways(&yaml).await;
    assert_eq!(a.routes()[0].rate_limit_store, Some("redis"));

    // One client, alternating between the gateways: 5 pass in total, not
    // 5 per gateway.
    let mut admitted = 0;
    for i in 0..12 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (status, headers) = get(gw, "10.0.0.1:40000", "/api/users/1").await;
        match status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(headers.contains_key("retry-after"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 5);
    // Another client has its own count, on either gateway.
    assert_eq!(
        get(&b, "10.0.0.2:40000", "/api/users/1").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&a, "10.0.0.2:40000", "/api/users/1").await.0,
        StatusCode::OK
    );

    // A route-wide limit is shared the same way, whichever client.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &b } else { &a };
        let client = format!("10.0.1.{i}:1000");
        statuses.push(get(gw, &client, "/api/all/x").await.0.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(users.hits(), 5 + 2 + 3);
}

#[tokio::test]
async fn an_unreachable_redis_follows_on_error() {
    // Nothing listens on port 1: every check fails fast.
    let users = backend("user-service").await;
    for (on_error, expect) in [
        ("fail_closed", StatusCode::TOO_MANY_REQUESTS),
        ("fail_open", StatusCode::OK),
    ] {
        let yaml = format!(
            r#"
rate_limit_store:
  redis: {{ url: "redis://127.0.0.1:1", on_error: {on_error}, timeout: 200ms }}
routes:
  - path: "/api/users/*"
    service: user-service
    rate_limit: 1/hour
    rate_limit_by: ip
services:
  user-service: {{ instances: ["{}"] }}
"#,
            users.addr
        );
        let (a, _) = two_gateways(&yaml).await;
        for _ in 0..3 {
            assert_eq!(
                get(&a, "10.0.0.1:1", "/api/users/1").await.0,
                expect,
                "{on_error}"
            );
        }
    }
}
