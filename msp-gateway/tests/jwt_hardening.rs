//! JWT providers against configurations that used to hurt: refresh bounds
//! below the 1 s floor (a `clamp` with inverted bounds panicked on every
//! key fetch), plain-http JWKS URLs to hosts that are not loopback (the
//! same checks on a YAML file are in tests/auth.rs), and a JWKS file
//! serving EdDSA and PS256 keys.

mod common;
mod jwt_support;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Empty;
use jsonwebtoken::Algorithm;
use jwt_support::{BOUND, claims, ed1, jwk, jwks_server, rsa1, set, sign};
use msp_gateway::Gateway;
use msp_gateway::auth::{InvalidJwtConfig, JwtAuth};
use msp_gateway::config::{GatewayConfig, JwksConfig, JwtConfig};
use std::time::Duration;
use tower::ServiceExt;

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

async fn status(gateway: &Gateway, path: &str, token: &str) -> u16 {
    let req = http::Request::get(path)
        .header("host", "gw")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    tokio::time::timeout(BOUND, gateway.clone().oneshot(req))
        .await
        .expect("answer in time")
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test]
async fn sub_second_refresh_bounds_from_code_fetch_refresh_and_verify_without_panicking() {
    // max-age=0: every refresh is due at once, so the lower bound (raised
    // to 1 s) decides; 500ms/500ms used to give clamp(1s, 500ms): a panic
    // in the request's fetch and in the background refresher.
    let mut jwks = jwks_server(
        set(&[jwk(&rsa1(), Algorithm::RS256, "k1")]),
        Some("public, max-age=0"),
    )
    .await;
    let half = Duration::from_millis(500);
    let config = JwtConfig::new(["RS256"])
        .jwks(JwksConfig::url(format!("http://{}/jwks", jwks.addr)).refresh_bounds(half, half));
    let auth = JwtAuth::new("idp", &config).expect("a provider");
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    let identity = tokio::time::timeout(BOUND, auth.authenticate(&bearer_headers(&token)))
        .await
        .expect("answer in time")
        .expect("the token verifies");
    assert_eq!(identity.subject(), Some("alice"));
    // The background refresher is alive: it fetches again on its own.
    let seen = jwks.fetches();
    while jwks.fetches() < seen + 2 {
        tokio::time::timeout(BOUND, jwks.fetched.recv())
            .await
            .expect("a background refresh in time")
            .expect("server up");
    }
    let token = sign(Algorithm::RS256, Some("k1"), &rsa1(), &claims());
    assert!(auth.authenticate(&bearer_headers(&token)).await.is_ok());
    jwks.stop().await;
}

#[tokio::test]
async fn a_provider_built_in_code_refuses_a_remote_http_jwks_url_and_takes_loopback() {
    let config = JwtConfig::new(["RS256"]).jwks_url("http://192.0.2.10/jwks");
    let err = JwtAuth::new("idp", &config).expect_err("not loopback");
    assert!(
        matches!(&err, InvalidJwtConfig::InsecureJwksUrl { provider, url }
            if provider == "idp" && url == "http://192.0.2.10/jwks"),
        "{err}"
    );
    for url in [
        "http://127.0.0.1:1/jwks",
        "http://127.8.9.10:1/jwks",
        "http://[::1]:1/jwks",
        "http://LOCALHOST:1/jwks",
    ] {
        let config = JwtConfig::new(["RS256"]).jwks_url(url);
        assert!(JwtAuth::new("idp", &config).is_ok(), "{url}");
    }
}

#[tokio::test]
async fn a_jwks_file_serves_eddsa_and_ps256_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jwks.json");
    let keys = set(&[
        jwk(&ed1(), Algorithm::EdDSA, "ed"),
        jwk(&rsa1(), Algorithm::PS256, "ps"),
    ]);
    std::fs::write(&path, keys.to_string()).expect("write JWKS");
    let (addr, backend) = common::spawn_backend().await;
    let yaml = format!(
        r#"
routes:
  - {{ path: "/api/*", service: api, auth_required: true }}
services:
  api: {{ instances: ["{addr}"] }}
auth:
  providers:
    files:
      jwt:
        algorithms: [EdDSA, PS256]
        jwks: {{ file: "{}" }}
"#,
        path.display()
    );
    let config = GatewayConfig::from_yaml(&yaml, "file.yaml").expect("valid");
    let gateway = Gateway::from_config(config).await.expect("gateway");
    let ed = sign(Algorithm::EdDSA, Some("ed"), &ed1(), &claims());
    assert_eq!(status(&gateway, "/api/x", &ed).await, 200);
    assert_eq!(backend.last().headers["x-jwt-sub"], "alice");
    let ps = sign(Algorithm::PS256, Some("ps"), &rsa1(), &claims());
    assert_eq!(status(&gateway, "/api/x", &ps).await, 200);
    // The JWK says PS256: the same RSA key under RS256 is refused.
    let rs = sign(Algorithm::RS256, Some("ps"), &rsa1(), &claims());
    assert_eq!(status(&gateway, "/api/x", &rs).await, 401);

    // A missing file is a build error, not a 503 later.
    let missing = yaml.replace("jwks.json", "nope.json");
    let config = GatewayConfig::from_yaml(&missing, "file.yaml").expect("valid");
    let err = Gateway::from_config(config).await.expect_err("no file");
    assert!(err.to_string().contains("nope.json"), "{err}");
}
