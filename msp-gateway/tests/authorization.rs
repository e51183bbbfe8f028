//! The gateway's `authorization:` step: msp-core's Istio-style policies
//! over every request after auth, on the verified identity headers (so a
//! condition on `x-consumer` or `x-jwt-claim-*` is a condition on verified
//! credentials) and on the client address derived through trusted proxies.

mod common_gw;

use common_gw::{Http, backend, gateway};
use http::{Method, StatusCode};
use msp_gateway::auth::hash_api_key;

fn config(users: std::net::SocketAddr) -> String {
    format!(
        r#"
routes:
  - path: "/admin/*"
    service: user-service
    auth_required: true
  - path: "/api/*"
    service: user-service
services:
  user-service: {{ instances: ["{users}"] }}
auth:
  providers:
    keys:
      api_key:
        consumers:
          - name: ops-console
            key_sha256: {ops}
          - name: mobile-app
            key_sha256: {mobile}
authorization:
  policies:
    - name: admin-only-for-ops
      action: ALLOW
      rules:
        - name: ops
          to: [{{ paths: ["/admin/*"] }}]
          when: [{{ header: x-consumer, values: ["ops-console"] }}]
        - name: public-api
          to: [{{ paths: ["/api/*"] }}]
    - name: no-deletes
      action: DENY
      rules:
        - to: [{{ methods: ["DELETE"] }}]
"#,
        ops = hash_api_key("ops-key"),
        mobile = hash_api_key("mobile-key"),
    )
}

#[tokio::test]
async fn policies_decide_on_the_verified_identity_after_auth() {
    let users = backend("user-service").await;
    let (_gw, addr) = gateway(&config(users.addr)).await;
    let http = Http::new(addr);

    // The ops console may use /admin; the mobile app, authenticated too,
    // may not: 403 problem+json from the policy, not from auth.
    let ok = http
        .send(Method::GET, "/admin/users", &[("x-api-key", "ops-key")])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let denied = http
        .send(Method::GET, "/admin/users", &[("x-api-key", "mobile-key")])
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert!(denied.body.contains("permission_denied"), "{}", denied.body);
    // A client claiming to be the ops console in the identity header gets
    // nothing: the gateway strips it and sets the verified one.
    let spoofed = http
        .send(
            Method::GET,
            "/admin/users",
            &[("x-api-key", "mobile-key"), ("x-consumer", "ops-console")],
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::FORBIDDEN);
    // Without credentials auth answers first (401), before any policy.
    assert_eq!(
        http.get("/admin/users").await.status,
        StatusCode::UNAUTHORIZED
    );

    // The public API is allowed for anyone; DENY beats that ALLOW.
    assert_eq!(http.get("/api/items").await.status, StatusCode::OK);
    let delete = http.send(Method::DELETE, "/api/items/1", &[]).await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    // No route: 404 from the route table, before any policy.
    assert_eq!(http.get("/elsewhere").await.status, StatusCode::NOT_FOUND);

    // Only allowed requests reached the upstream.
    assert_eq!(users.hits(), 2);
}

#[tokio::test]
async fn a_reload_replaces_the_policies() {
    let users = backend("user-service").await;
    let yaml = config(users.addr);
    let (gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);
    let mobile = [("x-api-key", "mobile-key")];
    assert_eq!(
        http.send(Method::GET, "/admin/x", &mobile).await.status,
        StatusCode::FORBIDDEN
    );
    let opened = yaml.replace(
        r#"values: ["ops-console"]"#,
        r#"values: ["ops-console", "mobile-app"]"#,
    );
    let next = msp_gateway::config::GatewayConfig::from_yaml(&opened, "v2").expect("v2");
    gw.reload(next).await.expect("reload");
    assert_eq!(
        http.send(Method::GET, "/admin/x", &mobile).await.status,
        StatusCode::OK
    );
}

#[test]
fn invalid_policies_are_load_errors() {
    let err = msp_gateway::config::GatewayConfig::from_yaml(
        r#"
routes:
  - path: "/api/*"
    service: s
services:
  s: { instances: ["127.0.0.1:9"] }
authorization:
  policies:
    - name: lan
      action: ALLOW
      rules:
        - from: [{ ip_blocks: ["10.0.0.0/33"] }]
"#,
        "bad.yaml",
    )
    .expect_err("a bad CIDR is refused");
    let text = err.to_string();
    assert!(
        text.contains("10.0.0.0/33") && text.contains("lan"),
        "{text}"
    );
}
