//! Three gateway **processes** (the `msp-gateway` binary, three times) with
//! one Redis: a per-consumer limit holds across all three — the total
//! admitted for a consumer is its quota, whichever process it reaches.
//! Needs Redis on 127.0.0.1:6379 (`MSP_REDIS_URL`); skipped when absent
//! (failed under `MSP_REQUIRE_BACKENDS=1`).
#![cfg(feature = "redis")]

mod common_gw;

use common_gw::{BOUND, Http, backend};
use http::{Method, StatusCode};
use msp_core::testing::{Backend, backend as redis_backend};
use msp_gateway::auth::hash_api_key;
use std::net::SocketAddr;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on `config` and waits (bounded) for the address it
/// logs once listening.
async fn start_gateway(config: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msp-gateway"))
        .arg("--config")
        .arg(config)
        .args(["--threads", "1"])
        .env("RUST_LOG", "msp_gateway=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the msp-gateway binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(BOUND, async {
        while let Some(line) = lines.next_line().await.expect("gateway output") {
            if line.contains("msp-gateway listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .expect("the listening line names its address");
                return addr.parse::<SocketAddr>().expect("an address");
            }
        }
        panic!("the gateway exited before listening");
    })
    .await
    .expect("the gateway listens in time");
    // Keep reading its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_share_one_per_consumer_limit_through_redis() {
    let Some(url) = redis_backend(Backend::Redis) else {
        return;
    };
    let users = backend("user-service").await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("msp-test:gateway:processes:{}:{nanos}", std::process::id());
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
rate_limit_store:
  redis: {{ url: "{url}", prefix: "{prefix}", on_error: fail_closed }}
routes:
  - path: "/api/users/*"
    service: user-service
    auth_required: true
    rate_limit: 10/hour
    rate_limit_by: consumer
services:
  user-service: {{ instances: ["{users}"] }}
auth:
  providers:
    keys:
      api_key:
        consumers:
          - name: app-a
            key_sha256: {a}
          - name: app-b
            key_sha256: {b}
"#,
        users = users.addr,
        a = hash_api_key("key-a"),
        b = hash_api_key("key-b"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, yaml).expect("config written");

    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(start_gateway(&config).await);
    }
    let clients: Vec<Http> = gateways.iter().map(|(_, addr)| Http::new(*addr)).collect();

    // Consumer app-a, round robin over the three processes: 10 in all.
    let mut admitted = 0;
    for i in 0..30 {
        let answer = clients[i % 3]
            .send(Method::GET, "/api/users/1", &[("x-api-key", "key-a")])
            .await;
        match answer.status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(answer.headers.contains_key("retry-after"), "{answer:?}");
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert_eq!(admitted, 10, "one quota for app-a across three processes");

    // app-b has a quota of its own, also shared.
    let mut admitted_b = 0;
    for i in 0..15 {
        let answer = clients[(i + 1) % 3]
            .send(Method::GET, "/api/users/2", &[("x-api-key", "key-b")])
            .await;
        if answer.status == StatusCode::OK {
            admitted_b += 1;
        }
    }
    assert_eq!(admitted_b, 10);
    assert_eq!(
        users.hits(),
        20,
        "only admitted requests reach the upstream"
    );

    for (mut child, _) in gateways {
        child.kill().await.expect("gateway stopped");
    }
}
