//! JWT auth with a real JWKS server on loopback and real tokens signed in
//! the test (RSA, EC and Ed25519 keys under tests/keys): pinned algorithms
//! (`alg: none`, HS/RS confusion), exp / nbf / iss / aud, scopes (403),
//! one JWKS re-fetch for 50 concurrent unknown-`kid` requests, key
//! rotation, background refresh, the last good keys while the JWKS server
//! is down and across a reload, 503 before any key set, identity headers
//! that cannot be spoofed, API keys beside JWT, per-consumer limits on
//! `sub`, and the seed YAML end to end. (Load-time checks of JWT providers
//! are in tests/auth.rs; a JWKS file, refresh bounds and loopback-only
//! JWKS URLs in tests/jwt_hardening.rs.)

mod common;
mod common_gw;
mod jwt_support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use jsonwebtoken::{Algorithm, EncodingKey, get_current_timestamp};
use jwt_support::{
    AUD, BOUND, ISS, Jwks, claims, der, ec1, jwk, jwks_server, rsa1, rsa2, set, sign, with,
};
use msp_gateway::Gateway;
use msp_gateway::auth::hash_api_key;
use msp_gateway::config::GatewayConfig;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tower::ServiceExt;

// ---- the gateway -----------------------------------------------------------

struct Setup {
    gateway: Gateway,
    backend: common::Backend,
}

/// Routes: `/api/orders/*` (the default provider, JWT), `/api/open/*` (no
/// auth), `/api/either/*` (API key or JWT).
fn yaml(backend: SocketAddr, jwks_url: &str, refetch: &str) -> String {
    format!(
        r#"
routes:
  - path: "/api/orders/*"
    service: orders
    auth_required: true
  - path: "/api/open/*"
    service: orders
  - path: "/api/either/*"
    service: orders
    auth_required: true
    auth: [keys, idp]
services:
  orders: {{ instances: ["{backend}"] }}
auth:
  default_provider: idp
  providers:
    keys:
      api_key:
        consumers:
          - {{ name: demo-app, key_sha256: "{digest}" }}
    idp:
      jwt:
        algorithms: [RS256, ES256]
        issuer: "{ISS}"
        audience: ["{AUD}"]
        leeway: 30s
        required_scopes: ["orders:read"]
        forward_claims: [tenant]
        jwks:
          url: "{jwks_url}"
          min_refetch_interval: {refetch}
"#,
        digest = hash_api_key("demo-key"),
    )
}

async fn setup(jwks: &Jwks, refetch: &str) -> Setup {
    setup_url(&format!("http://{}/jwks", jwks.addr), refetch).await
}

async fn setup_url(url: &str, refetch: &str) -> Setup {
    let (addr, backend) = common::spawn_backend().await;
    let config = GatewayConfig::from_yaml(&yaml(addr, url, refetch), "jwt.yaml").expect("valid");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    Setup { gateway, backend }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http::Request::get(path).header("host", "gw");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let res = tokio::time::timeout(BOUND, gateway.clone().oneshot(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn bearer(gateway: &Gateway, path: &str, token: &str) -> Answer {
    send(
        gateway,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

fn challenge(a: &Answer) -> String {
    a.headers
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

// ---- tests -----------------------------------------------------------------

#[tokio::test]
async fn a_good_token_passes_and_identity_headers_cannot_be_spoofed() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let s = setup(&jwks, "1h").await;
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    let spoofed = [
        ("authorization", format!("Bearer {token}")),
        ("x-consumer", "mallory".to_owned()),
        ("x-jwt-sub", "root".to_owned()),
        ("x-auth-provider", "keys".to_owned()),
        ("x-jwt-claim-role", "admin".to_owned()),
        ("X-JWT-Claim-Tenant", "evil-corp".to_owned()),
    ];
    let headers: Vec<(&str, &str)> = spoofed.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let a = send(&s.gateway, "/api/orders/1", &headers).await;
    assert_eq!(a.status, 200);
    let seen = s.backend.last().headers;
    assert_eq!(seen["x-jwt-sub"], "alice");
    assert_eq!(seen["x-consumer"], "alice");
    assert_eq!(seen["x-auth-provider"], "idp");
    assert_eq!(seen["x-jwt-claim-tenant"], "acme");
    assert_eq!(seen.get_all("x-jwt-claim-tenant").iter().count(), 1);
    assert!(
        !seen.contains_key("x-jwt-claim-role"),
        "not a forwarded claim"
    );

    // A route without auth strips them too.
    let a = send(&s.gateway, "/api/open/1", &headers[1..]).await;
    assert_eq!(a.status, 200);
    let seen = s.backend.last().headers;
    for h in [
        "x-consumer",
        "x-jwt-sub",
        "x-auth-provider",
        "x-jwt-claim-role",
        "x-jwt-claim-tenant",
    ] {
        assert!(!seen.contains_key(h), "{h} reached the upstream");
    }
}

#[tokio::test]
async fn alg_none_and_hs_rs_confusion_are_rejected() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let s = setup(&jwks, "1h").await;

    // alg: none, no signature.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let a = bearer(&s.gateway, "/api/orders/1", &token).await;
        assert_eq!(a.status, 401, "alg none");
        assert!(challenge(&a).contains(r#"error="invalid_token""#));
    }

    // HS256 "signed" with the RS256 public key as the HMAC secret.
    let public_pem = include_bytes!("keys/rsa1.pub.pem");
    let forged = sign(
        Algorithm::HS256,
        Some("k1"),
        &EncodingKey::from_secret(public_pem),
        &claims(),
    );
    let a = bearer(&s.gateway, "/api/orders/1", &forged).await;
    assert_eq!(a.status, 401, "HS256 with the public key");
    assert_eq!(a.body["code"], "invalid_credentials");
    assert!(
        challenge(&a).contains("HS256 is not accepted"),
        "{}",
        challenge(&a)
    );

    // Also with the public key as the JWK's bytes (the DER `n`): still HS.
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&der(include_str!("keys/rsa1.pub.pem"))),
        &claims(),
    );
    assert_eq!(
        bearer(&s.gateway, "/api/orders/1", &forged).await.status,
        401
    );

    // A critical header extension the gateway cannot understand.
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.crit = Some(vec!["urn:example:unknown".into()]);
    let crit = jsonwebtoken::encode(&header, &claims(), &rsa1()).expect("sign");
    let a = bearer(&s.gateway, "/api/orders/1", &crit).await;
    assert_eq!(a.status, 401);
    assert!(challenge(&a).contains("critical"), "{}", challenge(&a));

    // The genuine token passes: the rejections were about the algorithm.
    let good = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    assert_eq!(bearer(&s.gateway, "/api/orders/1", &good).await.status, 200);
    // A token signed by another key under the same kid fails the signature.
    let other = sign(Algorithm::RS256, Some("k1"), &rsa2(), &claims());
    let a = bearer(&s.gateway, "/api/orders/1", &other).await;
    assert_eq!(a.status, 401);
    assert!(challenge(&a).contains("signature"));
}

#[tokio::test]
async fn expired_not_yet_valid_wrong_iss_and_wrong_aud_are_rejected() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let s = setup(&jwks, "1h").await;
    let now = get_current_timestamp();
    let cases = [
        ("exp", json!(now - 3600), "expired"),
        ("nbf", json!(now + 3600), "not valid yet"),
        ("iss", json!("https://evil.test"), "issuer"),
        ("aud", json!("other-api"), "audience"),
    ];
    for (claim, value, why) in cases {
        let token = sign(
            Algorithm::RS256,
            Some("k1"),
            &rsa1(),
            &with(claims(), claim, value),
        );
        let a = bearer(&s.gateway, "/api/orders/1", &token).await;
        assert_eq!(a.status, 401, "{claim}");
        let c = challenge(&a);
        assert!(
            c.starts_with(r#"Bearer realm="idp", error="invalid_token""#),
            "{c}"
        );
        assert!(c.contains(why), "{claim}: {c}");
        assert_eq!(a.headers["content-type"], "application/problem+json");
    }
    // Within the 30 s leeway: accepted; no exp at all: refused.
    let token = sign(
        Algorithm::RS256,
        Some("k1"),
        &rsa1(),
        &with(claims(), "exp", json!(now - 5)),
    );
    assert_eq!(
        bearer(&s.gateway, "/api/orders/1", &token).await.status,
        200
    );
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &no_exp);
    assert_eq!(
        bearer(&s.gateway, "/api/orders/1", &token).await.status,
        401
    );
    // Missing token: 401 with a bare challenge (RFC 6750 §3.1).
    let a = send(&s.gateway, "/api/orders/1", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(challenge(&a), r#"Bearer realm="idp""#);
    assert_eq!(a.body["code"], "missing_credentials");
}

#[tokio::test]
async fn a_missing_scope_is_403_and_scp_arrays_count() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let s = setup(&jwks, "1h").await;
    let token = sign(
        Algorithm::RS256,
        Some("k1"),
        &rsa1(),
        &with(claims(), "scope", json!("profile")),
    );
    let a = bearer(&s.gateway, "/api/orders/1", &token).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["code"], "insufficient_scope");
    let c = challenge(&a);
    assert!(c.contains(r#"error="insufficient_scope""#), "{c}");
    assert!(c.contains(r#"scope="orders:read""#), "{c}");

    let mut scp = with(claims(), "scp", json!(["orders:read"]));
    scp.as_object_mut().expect("object").remove("scope");
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &scp);
    assert_eq!(
        bearer(&s.gateway, "/api/orders/1", &token).await.status,
        200
    );
}

#[tokio::test]
async fn an_unknown_kid_is_fetched_once_for_50_requests_and_the_rotated_key_passes() {
    let mut jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let s = setup(&jwks, "1h").await;
    let old = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    assert_eq!(bearer(&s.gateway, "/api/orders/1", &old).await.status, 200);
    assert_eq!(jwks.fetches(), 1, "the first key set");

    // The IdP rotates: k2 (RSA) and e1 (EC) join.
    jwks.replace(set(&[
        jwk(&rsa1(), Algorithm::RS256, "k1"),
        jwk(&rsa2(), Algorithm::RS256, "k2"),
        jwk(&ec1(), Algorithm::ES256, "e1"),
    ]));
    let rotated = sign(Algorithm::RS256, Some("k2"), &rsa2(), &claims());
    let answers = futures_util::future::join_all(
        (0..50).map(|_| bearer(&s.gateway, "/api/orders/1", &rotated)),
    )
    .await;
    let statuses: Vec<(StatusCode, String)> = answers
        .iter()
        .map(|a| (a.status, challenge(a) + &a.body.to_string()))
        .collect();
    assert!(answers.iter().all(|a| a.status == 200), "{statuses:?}");
    assert_eq!(jwks.fetches(), 2, "one re-fetch for 50 concurrent requests");
    while jwks.fetched.try_recv().is_ok() {}

    // The EC key came with the same fetch.
    let ec = sign(Algorithm::ES256, Some("e1"), &ec1(), &claims());
    assert_eq!(bearer(&s.gateway, "/api/orders/1", &ec).await.status, 200);
    // Another unknown kid within min_refetch_interval: no fetch, 401.
    let unknown = sign(Algorithm::RS256, Some("k9"), &rsa2(), &claims());
    let a = bearer(&s.gateway, "/api/orders/1", &unknown).await;
    assert_eq!(a.status, 401);
    assert!(
        challenge(&a).contains("no key with kid"),
        "{}",
        challenge(&a)
    );
    assert_eq!(jwks.fetches(), 2);

    // The admin listener shows the keys, never a secret.
    let admin = msp_gateway::admin::Admin::new(s.gateway.clone());
    let req = http::Request::get("/auth")
        .body(Empty::<Bytes>::new())
        .expect("req");
    let res = admin.oneshot(req).await.expect("admin");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let providers: Value = serde_json::from_slice(&body).expect("json");
    let idp = providers
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "idp")
        .expect("idp listed");
    assert_eq!(idp["kind"], "jwt");
    assert_eq!(idp["jwt"]["issuer"], ISS);
    assert_eq!(idp["jwt"]["key_ids"], json!(["k1", "k2", "e1"]));
    assert!(idp["jwt"]["last_fetch"].is_string());
    assert!(!String::from_utf8_lossy(&body).contains(&hash_api_key("demo-key")));
    jwks.stop().await;
}

#[tokio::test]
async fn the_last_good_keys_pass_while_the_jwks_server_is_down() {
    let mut jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    // Re-fetch on every unknown kid: each one tries the dead server.
    let s = setup(&jwks, "0s").await;
    let good = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    assert_eq!(bearer(&s.gateway, "/api/orders/1", &good).await.status, 200);
    jwks.stop().await;

    let unknown = sign(Algorithm::RS256, Some("k2"), &rsa2(), &claims());
    let a = bearer(&s.gateway, "/api/orders/1", &unknown).await;
    assert_eq!(a.status, 401, "an unknown key is still unknown, not a 503");
    assert_eq!(bearer(&s.gateway, "/api/orders/1", &good).await.status, 200);

    let status = s.gateway.auth_providers();
    let jwt = status
        .iter()
        .find_map(|p| p.jwt.clone())
        .expect("the JWT provider");
    assert!(jwt.last_error.is_some(), "the failed fetch is reported");
    assert_eq!(jwt.key_ids, ["k1"], "the last good set is kept");
}

#[tokio::test]
async fn no_key_set_ever_fetched_is_503_not_401() {
    let closed = common::closed_port().await;
    let s = setup_url(&format!("http://{closed}/jwks"), "0s").await;
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    let a = bearer(&s.gateway, "/api/orders/1", &token).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["code"], "auth_unavailable");
    assert_eq!(
        a.headers["retry-after"], "1",
        "min_refetch_interval, at least 1 s"
    );
    assert!(!a.headers.contains_key("www-authenticate"));
    // No token at all is still the caller's problem.
    assert_eq!(send(&s.gateway, "/api/orders/1", &[]).await.status, 401);
    assert!(s.backend.requests().is_empty());
}

#[tokio::test]
async fn the_key_set_is_refreshed_in_the_background_on_max_age() {
    // max-age=0 is clamped up to min_refresh (1 s): a second fetch comes
    // on its own, without any request.
    let mut jwks = jwks_server(
        set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]),
        Some("public, max-age=0"),
    )
    .await;
    let (addr, _backend) = common::spawn_backend().await;
    let url = format!("http://{}/jwks", jwks.addr);
    let config = yaml(addr, &url, "1h").replace(
        "min_refetch_interval: 1h",
        "min_refetch_interval: 1h\n          min_refresh: 1s\n          max_refresh: 1h",
    );
    let config = GatewayConfig::from_yaml(&config, "jwt.yaml").expect("valid");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    for n in 1..=2 {
        tokio::time::timeout(BOUND, jwks.fetched.recv())
            .await
            .unwrap_or_else(|_| panic!("fetch {n} in time"))
            .expect("server up");
    }
    // The rotated key arrives by refresh, not by an unknown-kid fetch:
    // fetch c+1 started after the change, and once fetch c+2 starts the
    // (sequential) refresher has stored c+1's set.
    jwks.replace(set(&[jwk(&rsa2(), Algorithm::RS256, "k2")]));
    let c = jwks.fetches();
    while jwks.fetches() < c + 2 {
        tokio::time::timeout(BOUND, jwks.fetched.recv())
            .await
            .expect("refresh in time")
            .expect("server up");
    }
    let providers = gateway.auth_providers();
    let jwt = providers.iter().find_map(|p| p.jwt.as_ref()).expect("jwt");
    assert_eq!(jwt.key_ids, ["k2"]);
    let token = sign(Algorithm::RS256, Some("k2"), &rsa2(), &claims());
    let a = bearer(&gateway, "/api/orders/1", &token).await;
    assert_eq!(a.status, 200);
    jwks.stop().await;
}

#[tokio::test]
async fn api_keys_still_work_beside_jwt() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let s = setup(&jwks, "1h").await;
    let a = send(
        &s.gateway,
        "/api/either/1",
        &[("x-api-key", "demo-key"), ("x-consumer", "someone-else")],
    )
    .await;
    assert_eq!(a.status, 200);
    let seen = s.backend.last().headers;
    assert_eq!(seen["x-consumer"], "demo-app");
    assert_eq!(seen["x-auth-provider"], "keys");
    assert!(!seen.contains_key("x-jwt-sub"));

    let a = send(&s.gateway, "/api/either/1", &[("x-api-key", "wrong")]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["code"], "invalid_credentials");
    assert!(challenge(&a).starts_with("ApiKey"));

    let a = send(&s.gateway, "/api/either/1", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["code"], "missing_credentials");
    // Nothing sent: a challenge per provider the route accepts.
    let challenges: Vec<&str> = a
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(
        challenges,
        [
            r#"ApiKey realm="keys", header="x-api-key""#,
            r#"Bearer realm="idp""#
        ]
    );

    // The same route takes a token.
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    assert_eq!(
        bearer(&s.gateway, "/api/either/1", &token).await.status,
        200
    );
    assert_eq!(s.backend.last().headers["x-auth-provider"], "idp");
    // A bad token with no API key: the token's refusal is the answer.
    let a = bearer(&s.gateway, "/api/either/1", "a.b.c").await;
    assert_eq!(a.status, 401);
    assert!(challenge(&a).contains("invalid_token"));
}

#[tokio::test]
async fn the_seed_yaml_with_auth_required_works_end_to_end_with_a_jwks_provider() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let (users, products, orders) = (
        common_gw::backend("users").await,
        common_gw::backend("products").await,
        common_gw::backend("orders").await,
    );
    let yaml = format!(
        r#"{routes}
services:
  user-service: {{ instances: ["{u}"] }}
  product-service: {{ instances: ["{p}"] }}
  order-service: {{ instances: ["{o}"] }}
auth:
  providers:
    idp:
      jwt:
        algorithms: [RS256]
        issuer: "{ISS}"
        audience: ["{AUD}"]
        jwks: {{ url: "http://{jwks}/jwks" }}
"#,
        routes = common_gw::SEED_ROUTES,
        u = users.addr,
        p = products.addr,
        o = orders.addr,
        jwks = jwks.addr,
    );
    let (_gateway, addr) = common_gw::gateway(&yaml).await;
    let http = common_gw::Http::new(addr);
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    let auth = format!("Bearer {token}");

    let a = http.get("/api/users/1").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.headers["www-authenticate"], r#"Bearer realm="idp""#);
    let a = http
        .send(
            http::Method::GET,
            "/api/users/1",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "users GET /api/users/1")
    );
    let a = http
        .send(
            http::Method::POST,
            "/api/orders/7",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "orders POST /api/orders/7")
    );
    let a = http.get("/api/products/3").await;
    assert_eq!(a.status, 200, "auth_required: false stays open");
    // cache_ttl: 300 on the seed's products route: the second read is a hit.
    assert_eq!(a.headers["x-cache"], "MISS");
    let again = http.get("/api/products/3").await;
    assert_eq!(again.headers["x-cache"], "HIT");
    assert_eq!(products.hits(), 1);
    assert_eq!(orders.hits(), 1);
    assert_eq!(users.hits(), 1);
}

#[tokio::test]
async fn an_hmac_provider_verifies_with_its_secret_only() {
    let secret = STANDARD.encode([7u8; 32]);
    let (addr, backend) = common::spawn_backend().await;
    let yaml = format!(
        r#"
routes:
  - {{ path: "/api/*", service: api, auth_required: true }}
services:
  api: {{ instances: ["{addr}"] }}
auth:
  providers:
    hs:
      jwt:
        algorithms: [HS256]
        secret_base64: "{secret}"
"#
    );
    let config = GatewayConfig::from_yaml(&yaml, "hs.yaml").expect("valid");
    assert!(
        !format!("{config:?}").contains(&secret),
        "the secret is redacted"
    );
    let gateway = Gateway::from_config(config).await.expect("gateway");
    let key = EncodingKey::from_secret(&[7u8; 32]);
    let token = sign(Algorithm::HS256, None, &key, &claims());
    assert_eq!(bearer(&gateway, "/api/x", &token).await.status, 200);
    assert_eq!(backend.last().headers["x-jwt-sub"], "alice");
    let wrong = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&[8u8; 32]),
        &claims(),
    );
    assert_eq!(bearer(&gateway, "/api/x", &wrong).await.status, 401);
    // An RS256 token to an HMAC provider: the algorithm is not pinned.
    let rs = sign(Algorithm::RS256, None, &rsa1(), &claims());
    assert_eq!(bearer(&gateway, "/api/x", &rs).await.status, 401);
}

#[tokio::test]
async fn a_reload_keeps_the_key_set_even_with_the_jwks_server_down() {
    let mut jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let (addr, _backend) = common::spawn_backend().await;
    let url = format!("http://{}/jwks", jwks.addr);
    let config = |extra: &str| {
        let yaml = yaml(addr, &url, "1h").replace(
            "  - path: \"/api/open/*\"",
            &format!("{extra}  - path: \"/api/open/*\""),
        );
        GatewayConfig::from_yaml(&yaml, "jwt.yaml").expect("valid")
    };
    let gateway = Gateway::from_config(config("")).await.expect("gateway");
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    assert_eq!(bearer(&gateway, "/api/orders/1", &token).await.status, 200);
    jwks.stop().await;

    // A new route, same provider: the new generation keeps its keys.
    let extra = "  - path: \"/api/new/*\"\n    service: orders\n    auth_required: true\n";
    gateway.reload(config(extra)).await.expect("reload");
    assert_eq!(bearer(&gateway, "/api/new/1", &token).await.status, 200);
    assert_eq!(bearer(&gateway, "/api/orders/1", &token).await.status, 200);
    assert_eq!(jwks.fetches(), 1, "no re-fetch on reload");
}

#[tokio::test]
async fn rate_limit_by_consumer_keys_on_the_token_subject() {
    let jwks = jwks_server(set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]), None).await;
    let (addr, _backend) = common::spawn_backend().await;
    let url = format!("http://{}/jwks", jwks.addr);
    let yaml = yaml(addr, &url, "1h").replace(
        "  - path: \"/api/orders/*\"\n    service: orders\n    auth_required: true\n",
        "  - path: \"/api/orders/*\"\n    service: orders\n    auth_required: true\n    rate_limit: 1/hour\n    rate_limit_by: consumer\n",
    );
    let config = GatewayConfig::from_yaml(&yaml, "jwt.yaml").expect("valid");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    let alice = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    let bob = sign(
        Algorithm::RS256,
        Some("k1"),
        &rsa1(),
        &with(claims(), "sub", json!("bob")),
    );
    assert_eq!(bearer(&gateway, "/api/orders/1", &alice).await.status, 200);
    assert_eq!(bearer(&gateway, "/api/orders/1", &alice).await.status, 429);
    assert_eq!(bearer(&gateway, "/api/orders/1", &bob).await.status, 200);
}
