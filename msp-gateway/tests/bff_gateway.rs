//! The BFF through the Gateway: `aggregates:` from YAML served beside
//! routes over each service's discovery + resilience stack, load-time
//! errors naming the aggregate, field and line, conflicts with routes,
//! reloads, and the README's example.

mod bff_common;

use bff_common::{closed_port, get as request, json, shop};
use msp_gateway::Gateway;
use msp_gateway::config::GatewayConfig;
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn the_gateway_serves_an_aggregate_from_yaml() {
    let addr = shop().await;
    let yaml = format!(
        r#"
services:
  user-service: {{ instances: ["{addr}"] }}
  review-service: {{ instances: ["{addr}"] }}
routes:
  - path: "/api/users/*"
    service: user-service
    strip_prefix: "/api"
aggregates:
  - name: user-page
    path: "/bff/users/{{id}}"
    deadline: 2s
    backends:
      - name: user
        url: "http://user-service/users/{{id}}"
        required: true
        deny: [password_hash]
      - name: reviews
        url: "http://review-service/reviews/{{id}}"
        group: reviews
      - name: slow
        url: "http://review-service/slow"
        timeout: 100ms
"#
    );
    let config = GatewayConfig::from_yaml(&yaml, "gateway.yaml").expect("test value");
    let gateway = Gateway::from_config(config).await.expect("test value");
    let res = gateway
        .clone()
        .oneshot(request("/bff/users/5"))
        .await
        .expect("test value");
    assert_eq!(res.status(), 200, "{}", json(res).await);
    assert_eq!(res.headers()["x-partial"], "true");
    assert_eq!(
        json(res).await,
        json!({
            "id": 5, "name": "Ada", "email": "ada@example.com",
            "reviews": {"user": 5, "stars": [5, 4]},
            "_partial": {"failed": ["slow"], "reasons": {"slow": "timeout"}},
        })
    );
    // Methods other than the aggregate's: 405 from the route table.
    let post = http::Request::post("/bff/users/5")
        .header("host", "gw")
        .body(msp_gateway::Body::empty())
        .expect("test value");
    assert_eq!(
        gateway
            .clone()
            .oneshot(post)
            .await
            .expect("test value")
            .status(),
        405
    );
    // Ordinary routes still work beside it.
    let res = gateway
        .oneshot(request("/api/users/5"))
        .await
        .expect("test value");
    assert_eq!(res.status(), 200);
}

#[test]
fn gateway_config_errors_name_the_aggregate_field_and_line() {
    let yaml = r#"
services:
  user-service: { instances: ["127.0.0.1:1"] }
aggregates:
  - name: user-page
    path: "/bff/users/{id}"
    backends:
      - name: user
        url: "http://user-service/users/{id}"
      - name: reviews
        url: "http://nowhere/reviews/{user.id}"
        concurrency: 0
"#;
    let err = GatewayConfig::from_yaml(yaml, "gateway.yaml").expect_err("an error");
    let text = err.to_string();
    assert_eq!(
        text,
        "gateway.yaml:11: `aggregates[0].backends[1].url`: aggregate #0 (user-page): unknown service \"nowhere\"\n\
         gateway.yaml:12: `aggregates[0].backends[1].concurrency`: aggregate #0 (user-page): must be at least 1"
    );
    let bad = "aggregates:\n  - name: a\n    path: /a\n    backends: []\n    colour: red\n";
    let err = GatewayConfig::from_yaml(bad, "g.yaml").expect_err("an error");
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn the_readme_aggregate_loads() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("### Aggregates: backends for frontends")
        .nth(1)
        .expect("the README's BFF section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("its YAML block");
    let services = "services:\n  order-service: { instances: [\"127.0.0.1:1\"] }\n  product-service: { instances: [\"127.0.0.1:2\"] }\n  review-service: { instances: [\"127.0.0.1:3\"] }\n";
    let config = GatewayConfig::from_yaml(&format!("{services}{yaml}"), "README.md")
        .expect("the README's aggregate loads");
    assert_eq!(config.aggregates()[0].backends.len(), 4);
}

#[test]
fn an_aggregate_path_taken_by_a_route_is_a_load_error() {
    let yaml = r#"
services:
  user-service: { instances: ["127.0.0.1:1"] }
routes:
  - path: "/bff/users/{id}"
    service: user-service
aggregates:
  - name: user-page
    path: "/bff/users/{id}"
    backends:
      - name: user
        url: "http://user-service/users/{id}"
"#;
    let err = GatewayConfig::from_yaml(yaml, "gateway.yaml").expect_err("a conflict");
    let problem = &err.problems()[0];
    assert_eq!(problem.field(), "aggregates[0].path");
    assert_eq!(problem.line(), Some(9));
    assert!(problem.message().contains("user-page"), "{err}");
}

#[tokio::test]
async fn through_the_gateway_a_required_service_refusing_is_a_502_or_503() {
    let closed = closed_port().await;
    let yaml = format!(
        r#"
services:
  user-service: {{ instances: ["{closed}"] }}
aggregates:
  - name: user-page
    path: "/bff/users/{{id}}"
    backends:
      - name: user
        url: "http://user-service/users/{{id}}"
        required: true
"#
    );
    let config = GatewayConfig::from_yaml(&yaml, "gateway.yaml").expect("config");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    let res = gateway
        .oneshot(request("/bff/users/5"))
        .await
        .expect("infallible");
    assert!(
        res.status() == 502 || res.status() == 503,
        "status {}",
        res.status()
    );
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_reload_replaces_the_aggregates() {
    let addr = shop().await;
    let yaml = |path: &str| {
        format!(
            r#"
services:
  user-service: {{ instances: ["{addr}"] }}
aggregates:
  - name: user-page
    path: "{path}"
    backends:
      - name: user
        url: "http://user-service/users/{{id}}"
        required: true
        allow: [name]
"#
        )
    };
    let config = GatewayConfig::from_yaml(&yaml("/v1/users/{id}"), "a.yaml").expect("config");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    let res = gateway
        .clone()
        .oneshot(request("/v1/users/1"))
        .await
        .expect("infallible");
    assert_eq!(json(res).await, json!({"name": "Ada"}));
    let next = GatewayConfig::from_yaml(&yaml("/v2/users/{id}"), "b.yaml").expect("config");
    gateway.reload(next).await.expect("reloaded");
    let res = gateway
        .clone()
        .oneshot(request("/v1/users/1"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), 404);
    let res = gateway
        .oneshot(request("/v2/users/1"))
        .await
        .expect("infallible");
    assert_eq!(json(res).await, json!({"name": "Ada"}));
}

#[tokio::test]
async fn an_aggregate_can_require_authentication() {
    let addr = shop().await;
    let yaml = format!(
        r#"
auth:
  providers:
    keys:
      api_key:
        consumers:
          - {{ name: web, key_sha256: {} }}
services:
  user-service: {{ instances: ["{addr}"] }}
aggregates:
  - name: user-page
    path: "/bff/users/{{id}}"
    auth_required: true
    backends:
      - name: user
        url: "http://user-service/users/{{id}}"
        required: true
        allow: [name]
"#,
        msp_gateway::auth::hash_api_key("web-key")
    );
    let config = GatewayConfig::from_yaml(&yaml, "gateway.yaml").expect("config");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    let res = gateway
        .clone()
        .oneshot(request("/bff/users/1"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), 401);
    let mut req = request("/bff/users/1");
    req.headers_mut()
        .insert("x-api-key", http::HeaderValue::from_static("web-key"));
    let res = gateway.oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await, json!({"name": "Ada"}));
    // An unknown provider is a load error on the aggregate's field.
    let bad = yaml.replace(
        "auth_required: true",
        "auth_required: true\n    auth: [nope]",
    );
    let err = GatewayConfig::from_yaml(&bad, "gateway.yaml").expect_err("unknown provider");
    assert_eq!(err.problems()[0].field(), "aggregates[0].auth[0]");
}
