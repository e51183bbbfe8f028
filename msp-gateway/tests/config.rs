//! GatewayConfig: the seed YAML verbatim, expanded forms, the builder, and
//! every validation error naming route, field and line.

use http::Method;
use msp_gateway::auth::hash_api_key;
use msp_gateway::config::{
    ApiKeyConfig, AuthProviderConfig, GatewayConfig, ProblemKind, RateLimitBy, RegistryConfig,
    RouteConfig, ServiceConfig, StripPrefix,
};
use std::time::Duration;

/// The seed's three routes exactly as the issue writes them.
const SEED_ROUTES: &str = r#"routes:
  - path: "/api/users/*"
    service: "user-service"
    methods: ["GET", "POST", "PUT", "DELETE"]
    auth_required: true
    rate_limit: 1000/hour
  - path: "/api/products/*"
    service: "product-service"
    methods: ["GET"]
    auth_required: false
    rate_limit: 5000/hour
    cache_ttl: 300
  - path: "/api/orders/*"
    service: "order-service"
    methods: ["GET", "POST"]
    auth_required: true
    rate_limit: 500/hour
"#;

fn seed_file() -> String {
    format!(
        r#"{SEED_ROUTES}
services:
  user-service:
    instances: ["127.0.0.1:9001"]
  product-service:
    instances: ["127.0.0.1:9002"]
  order-service:
    instances: ["127.0.0.1:9003"]
auth:
  providers:
    keys:
      api_key:
        consumers:
          - name: web
            key_sha256: "{}"
"#,
        hash_api_key("web-key")
    )
}

/// kind, route index, field, line, message.
type Found = (ProblemKind, Option<usize>, String, Option<u32>, String);

fn problems(yaml: &str) -> Vec<Found> {
    let err = GatewayConfig::from_yaml(yaml, "test.yaml").expect_err("must be rejected");
    err.problems()
        .iter()
        .map(|p| {
            (
                p.kind(),
                p.route_ref().map(|r| r.index()),
                p.field().to_owned(),
                p.line(),
                p.message().to_owned(),
            )
        })
        .collect()
}

#[test]
fn seed_yaml_loads_verbatim_beside_services_and_auth() {
    let config = GatewayConfig::from_yaml(&seed_file(), "seed.yaml").expect("seed loads");
    let routes = config.routes();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[0].path, "/api/users/*");
    assert_eq!(routes[0].service.as_deref(), Some("user-service"));
    assert_eq!(
        routes[0].methods,
        [Method::GET, Method::POST, Method::PUT, Method::DELETE]
    );
    assert!(routes[0].auth_required);
    assert_eq!(
        routes[0].rate_limit,
        Some("1000/hour".parse().expect("quota"))
    );
    assert_eq!(routes[1].cache_ttl, Some(300));
    assert!(!routes[1].auth_required);
    assert_eq!(routes[2].rate_limit.map(|q| q.limit()), Some(500));
    assert_eq!(config.auth().default_provider_name(), Some("keys"));
    assert_eq!(config.listen(), "127.0.0.1:8080".parse().expect("addr"));
}

#[test]
fn seed_config_from_the_builder_equals_the_yaml() {
    let keys = ApiKeyConfig::new().consumer("web", hash_api_key("web-key"));
    let svc = |port: u16| ServiceConfig::new([([127, 0, 0, 1], port).into()]);
    let built = GatewayConfig::builder()
        .route(
            RouteConfig::new("/api/users/*")
                .service("user-service")
                .methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .auth_required(true)
                .rate_limit("1000/hour".parse().expect("quota")),
        )
        .route(
            RouteConfig::new("/api/products/*")
                .service("product-service")
                .methods([Method::GET])
                .rate_limit("5000/hour".parse().expect("quota"))
                .cache_ttl(300),
        )
        .route(
            RouteConfig::new("/api/orders/*")
                .service("order-service")
                .methods([Method::GET, Method::POST])
                .auth_required(true)
                .rate_limit("500/hour".parse().expect("quota")),
        )
        .service("user-service", svc(9001))
        .service("product-service", svc(9002))
        .service("order-service", svc(9003))
        .auth_provider("keys", AuthProviderConfig::ApiKey(keys))
        .build()
        .expect("valid");
    let yaml = GatewayConfig::from_yaml(&seed_file(), "seed.yaml").expect("seed loads");
    assert_eq!(built, yaml);
}

#[test]
fn expanded_forms_load() {
    let yaml = r#"
listen: 0.0.0.0:8080
admin: { listen: 127.0.0.1:9901 }
trusted_proxies: [10.0.0.0/8, "::1/128"]
limits: { max_body_bytes: 1048576 }
registry: static
services:
  users-v1:
    instances: ["10.0.0.1:8080", "10.0.0.2:8080"]
    balancer: round_robin
    connect_timeout: 250ms
    pool: { idle_timeout: 30s, max_idle_per_host: 8 }
    health_check: { path: /health, interval: 5s }
  users-v2: { instances: ["10.0.0.3:8080"], h2c: true }
  shadow: { instances: ["10.0.0.9:8080"] }
routes:
  - name: users
    path: /api/users/{id}
    host: api.example.com
    headers: { x-canary: "1" }
    query: { version: "2" }
    split:
      - { service: users-v1, weight: 90 }
      - { service: users-v2, weight: 10 }
    rewrite: /v2/users/{id}
    preserve_host: true
    timeout: 2s
    retry: { max_attempts: 2 }
    breaker: { failure_rate: 25.0, open_duration: 10s }
    bulkhead: { max_concurrent: 20, max_queue: 5, max_wait: 100ms }
    mirror: { service: shadow, percent: 5 }
    rate_limit: 50/s burst 100
    rate_limit_by: ip
  - path: /static/*
    service: users-v1
    strip_prefix: true
    rate_limit: { limit: 10, period: 1s }
    rate_limit_by: { header: x-tenant }
  - path: /old/*
    service: users-v1
    strip_prefix: /old
"#;
    let config = GatewayConfig::from_yaml(yaml, "expanded.yaml").expect("loads");
    let r = &config.routes()[0];
    assert_eq!(r.id(), "users");
    assert_eq!(r.split.len(), 2);
    assert_eq!(r.timeout, Some(Duration::from_secs(2)));
    assert_eq!(r.retry.as_ref().map(|r| r.max_attempts()), Some(2));
    assert_eq!(r.bulkhead.as_ref().map(|b| b.max_concurrent()), Some(20));
    assert_eq!(r.breaker.as_ref().map(|b| b.failure_rate()), Some(25.0));
    assert_eq!(r.mirror.as_ref().map(|m| m.percent), Some(5.0));
    assert_eq!(r.rate_limit_by, RateLimitBy::Ip);
    assert_eq!(config.routes()[1].strip_prefix, StripPrefix::Route);
    assert_eq!(
        config.routes()[1].rate_limit_by,
        RateLimitBy::Header("x-tenant".into())
    );
    assert_eq!(
        config.routes()[2].strip_prefix,
        StripPrefix::Prefix("/old".into())
    );
    assert_eq!(*config.registry(), RegistryConfig::Static);
    assert_eq!(config.trusted_proxies().len(), 2);
    let svc = &config.services()["users-v1"];
    assert_eq!(svc.connect_timeout, Duration::from_millis(250));
    assert_eq!(svc.pool.max_idle_per_host, 8);
    assert!(config.services()["users-v2"].h2c);
    assert_eq!(config.limits().max_body_bytes, 1 << 20);
}

#[test]
fn unknown_field_names_route_field_and_line() {
    let yaml = "services: { a: {} }\nroutes:\n  - path: /a/*\n    service: a\n    methods: [GET]\n  - path: /b/*\n    service: a\n    retries: 3\n";
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "{p:?}");
    let (kind, route, field, line, message) = &p[0];
    assert_eq!(*kind, ProblemKind::Parse);
    assert_eq!(*route, Some(1));
    assert_eq!(field, "retries");
    assert_eq!(*line, Some(8));
    assert!(message.contains("retries"), "{message}");
}

#[test]
fn unknown_top_level_field_is_an_error() {
    let p = problems("route: []\n");
    assert_eq!(p[0].0, ProblemKind::Parse);
    assert_eq!(p[0].3, Some(1));
    assert!(p[0].4.contains("route"), "{:?}", p[0]);
}

#[test]
fn bad_quota_names_route_field_and_line() {
    let yaml = "services: { a: {} }\nroutes:\n  - path: /a/*\n    service: a\n    rate_limit: 1000 per hour\n";
    let p = problems(yaml);
    let (kind, route, field, line, message) = &p[0];
    assert_eq!(*kind, ProblemKind::Parse);
    assert_eq!(*route, Some(0));
    assert_eq!(field, "rate_limit");
    assert_eq!(*line, Some(5));
    assert!(message.contains("quota"), "{message}");
}

#[test]
fn bad_duration_is_a_parse_error_at_its_line() {
    let yaml = "services: { a: {} }\nroutes:\n  - path: /a/*\n    service: a\n    timeout: soon\n";
    let p = problems(yaml);
    assert_eq!(
        (p[0].1, p[0].2.as_str(), p[0].3),
        (Some(0), "timeout", Some(5))
    );
}

#[test]
fn auth_required_without_a_provider_is_a_load_error() {
    let yaml = format!(
        "{SEED_ROUTES}services:\n  user-service: {{}}\n  product-service: {{}}\n  order-service: {{}}\n"
    );
    let p = problems(&yaml);
    let auth: Vec<_> = p.iter().filter(|p| p.0 == ProblemKind::Auth).collect();
    assert_eq!(auth.len(), 2, "{p:?}");
    assert_eq!(
        (auth[0].1, auth[0].2.as_str(), auth[0].3),
        (Some(0), "auth_required", Some(5))
    );
    assert_eq!(
        (auth[1].1, auth[1].2.as_str(), auth[1].3),
        (Some(2), "auth_required", Some(16))
    );
}

#[test]
fn unknown_services_are_all_listed_with_lines() {
    let p = problems(SEED_ROUTES);
    let unknown: Vec<_> = p
        .iter()
        .filter(|p| p.0 == ProblemKind::UnknownService)
        .map(|p| (p.1, p.2.clone(), p.3))
        .collect();
    assert_eq!(
        unknown,
        [
            (Some(0), "service".to_owned(), Some(3)),
            (Some(1), "service".to_owned(), Some(8)),
            (Some(2), "service".to_owned(), Some(14)),
        ]
    );
}

#[test]
fn unknown_services_are_fine_when_the_registry_discovers_them() {
    // etcd discovers services by name (this only parses; nothing connects).
    let yaml = "registry: { etcd: { endpoints: [\"http://127.0.0.1:2379\"] } }\nroutes:\n  - path: /a/*\n    service: anything\n";
    GatewayConfig::from_yaml(yaml, "t.yaml").expect("etcd finds services by name");
}

#[test]
fn split_and_mirror_services_are_checked() {
    let yaml = "services: { a: {} }\nroutes:\n  - path: /a/*\n    split:\n      - { service: a, weight: 1 }\n      - { service: b, weight: 0 }\n    mirror: { service: c, percent: 150 }\n";
    let p = problems(yaml);
    let got: Vec<_> = p.iter().map(|p| (p.0, p.2.as_str(), p.3)).collect();
    assert!(
        got.contains(&(ProblemKind::UnknownService, "split[1].service", Some(6))),
        "{got:?}"
    );
    assert!(
        got.contains(&(ProblemKind::Invalid, "split[1].weight", Some(6))),
        "{got:?}"
    );
    assert!(
        got.contains(&(ProblemKind::UnknownService, "mirror.service", Some(7))),
        "{got:?}"
    );
    assert!(
        got.contains(&(ProblemKind::Invalid, "mirror.percent", Some(7))),
        "{got:?}"
    );
}

#[test]
fn conflicting_routes_are_rejected_naming_both() {
    let yaml = "services: { a: {} }\nroutes:\n  - path: /api/{id}\n    service: a\n    methods: [GET, POST]\n  - path: /api/{user}\n    service: a\n    methods: [POST]\n  - path: /api/{user}\n    service: a\n    methods: [PUT]\n  - path: /api/{user}\n    host: other.example\n    service: a\n";
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "{p:?}");
    let (kind, route, field, line, message) = &p[0];
    assert_eq!(*kind, ProblemKind::Conflict);
    assert_eq!((*route, field.as_str(), *line), (Some(1), "path", Some(6)));
    assert!(message.contains("route #0"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once_in_document_order() {
    let yaml = "routes:\n  - path: api\n    service: a\n  - path: /b/*\n    service: b\n    strip_prefix: /c\n    rewrite: /x/{nope}\n";
    let p = problems(yaml);
    let got: Vec<_> = p.iter().map(|p| (p.1, p.2.as_str(), p.3)).collect();
    assert_eq!(
        got,
        [
            (Some(0), "path", Some(2)),
            (Some(0), "service", Some(3)),
            (Some(1), "service", Some(5)),
            (Some(1), "strip_prefix", Some(6)),
            (Some(1), "rewrite", Some(7)),
            (Some(1), "rewrite", Some(7)),
        ]
    );
}

#[test]
fn errors_display_origin_line_route_and_field() {
    let err = GatewayConfig::from_yaml(SEED_ROUTES, "gateway.yaml").expect_err("no services");
    let text = err.to_string();
    let first = text.lines().next().expect("a line");
    assert_eq!(
        first,
        r#"gateway.yaml:3: route #0 (/api/users/*): `service`: unknown service "user-service" (no services are configured)"#
    );
}

#[test]
fn api_key_digests_must_be_hashes_not_keys() {
    let yaml = "auth:\n  providers:\n    keys:\n      api_key:\n        consumers:\n          - name: web\n            key_sha256: my-plain-key\n";
    let p = problems(yaml);
    assert_eq!(
        (p[0].0, p[0].2.as_str(), p[0].3),
        (
            ProblemKind::Invalid,
            "auth.providers.keys.api_key.consumers[0].key_sha256",
            Some(7)
        )
    );
}

#[test]
fn rate_limit_by_consumer_needs_auth() {
    let yaml = "services: { a: {} }\nroutes:\n  - path: /a\n    service: a\n    rate_limit: 5/s\n    rate_limit_by: consumer\n";
    let p = problems(yaml);
    assert_eq!(
        (p[0].0, p[0].2.as_str(), p[0].3),
        (ProblemKind::Auth, "rate_limit_by", Some(6))
    );
}

#[test]
fn builder_errors_have_no_lines_but_name_route_and_field() {
    let err = GatewayConfig::builder()
        .route(RouteConfig::new("/a/*").service("missing"))
        .build()
        .expect_err("unknown service");
    let p = &err.problems()[0];
    assert_eq!(err.origin(), "builder");
    assert_eq!(
        (p.kind(), p.field(), p.line()),
        (ProblemKind::UnknownService, "service", None)
    );
    assert_eq!(p.route_ref().map(|r| r.path()), Some("/a/*"));
}

#[test]
fn a_missing_file_is_an_io_problem() {
    let err = GatewayConfig::from_file("/nonexistent/gateway.yaml").expect_err("no file");
    assert_eq!(err.problems()[0].kind(), ProblemKind::Io);
}

#[test]
fn invalid_yaml_is_a_parse_error_with_a_line() {
    let p = problems("routes:\n  - path: [unclosed\n");
    assert_eq!(p[0].0, ProblemKind::Parse);
    assert!(p[0].3.is_some(), "{p:?}");
}

#[test]
fn unknown_fields_deep_in_services_and_auth_name_their_path() {
    let p = problems("services:\n  a:\n    instances: []\n    pool:\n      idle: 5s\n");
    assert_eq!(
        (p[0].0, p[0].1, p[0].2.as_str(), p[0].3),
        (ProblemKind::Parse, None, "services.a.pool.idle", Some(5))
    );
    let p = problems("auth:\n  providers:\n    k:\n      jwt: {}\n");
    assert_eq!(
        (p[0].1, p[0].2.as_str(), p[0].3),
        (None, "auth.providers.k.jwt", Some(4))
    );
}

#[test]
fn a_config_serializes_and_loads_back_unchanged() {
    let config = GatewayConfig::from_yaml(&seed_file(), "seed.yaml").expect("seed loads");
    let json = serde_json::to_string(&config).expect("serializes");
    let back: GatewayConfig = serde_json::from_str(&json).expect("loads back");
    assert_eq!(config, back);
    // And deserializing runs the same checks.
    let err = serde_json::from_str::<GatewayConfig>(r#"{"routes":[{"path":"/a","service":"x"}]}"#)
        .expect_err("unknown service");
    assert!(err.to_string().contains("unknown service"), "{err}");
}
