//! API-key auth: good, bad, missing keys; header and query; 401 with
//! WWW-Authenticate and a problem+json body; no key in errors or Debug.
//! Identity headers stripped and set; JWT providers' load-time checks.

use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use msp_core::http::{ToProblem, problem_for};
use msp_gateway::auth::{ApiKeyAuth, AuthErrorKind, InvalidApiKeyConfig, hash_api_key};
use msp_gateway::config::{ApiKeyConfig, AuthProviderConfig, GatewayConfig};

fn auth() -> ApiKeyAuth {
    let config = ApiKeyConfig::new()
        .query("api_key")
        .consumer("web", hash_api_key("web-key"))
        .consumer("mobile", hash_api_key("mobile-key").to_uppercase());
    ApiKeyAuth::new("keys", &config).expect("valid")
}

fn headers(name: &'static str, value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_static(value));
    h
}

#[test]
fn a_good_key_in_the_header_names_its_consumer() {
    let a = auth();
    assert_eq!(
        a.authenticate(&headers("x-api-key", "web-key"), None)
            .expect("ok")
            .name(),
        "web"
    );
    // Digests are accepted in either hex case.
    assert_eq!(
        a.authenticate(&headers("x-api-key", "mobile-key"), None)
            .expect("ok")
            .name(),
        "mobile"
    );
}

#[test]
fn a_good_key_in_the_query_works_only_when_configured() {
    let a = auth();
    let c = a
        .authenticate(&HeaderMap::new(), Some("x=1&api_key=web%2Dkey"))
        .expect("ok");
    assert_eq!(c.name(), "web");
    let header_only = ApiKeyAuth::new(
        "k",
        &ApiKeyConfig::new().consumer("web", hash_api_key("web-key")),
    )
    .expect("valid");
    let err = header_only
        .authenticate(&HeaderMap::new(), Some("api_key=web-key"))
        .expect_err("query not configured");
    assert_eq!(err.kind(), AuthErrorKind::Missing);
}

#[test]
fn a_custom_header_is_read() {
    let a = ApiKeyAuth::new(
        "k",
        &ApiKeyConfig::new()
            .header("authorization-key")
            .consumer("c", hash_api_key("k1")),
    )
    .expect("valid");
    assert!(
        a.authenticate(&headers("authorization-key", "k1"), None)
            .is_ok()
    );
    assert!(a.authenticate(&headers("x-api-key", "k1"), None).is_err());
}

#[test]
fn a_bad_key_is_invalid_and_a_missing_one_missing() {
    let a = auth();
    let bad = a
        .authenticate(&headers("x-api-key", "web-kez"), None)
        .expect_err("bad");
    assert_eq!(bad.kind(), AuthErrorKind::Invalid);
    let missing = a
        .authenticate(&HeaderMap::new(), None)
        .expect_err("missing");
    assert_eq!(missing.kind(), AuthErrorKind::Missing);
    let empty = a
        .authenticate(&headers("x-api-key", ""), None)
        .expect_err("empty");
    assert_eq!(empty.kind(), AuthErrorKind::Missing);
    // The digest itself is not a key.
    let digest: &'static str = Box::leak(hash_api_key("web-key").into_boxed_str());
    assert!(a.authenticate(&headers("x-api-key", digest), None).is_err());
}

#[test]
fn two_key_headers_are_refused() {
    let a = auth();
    let mut h = HeaderMap::new();
    h.append("x-api-key", HeaderValue::from_static("web-key"));
    h.append("x-api-key", HeaderValue::from_static("other"));
    assert_eq!(
        a.authenticate(&h, None).expect_err("ambiguous").kind(),
        AuthErrorKind::Invalid
    );
}

#[tokio::test]
async fn errors_are_401_problems_with_www_authenticate() {
    let a = auth();
    let err = a
        .authenticate(&headers("x-api-key", "nope"), None)
        .expect_err("bad");
    let problem = err.to_problem();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (401, "invalid_credentials")
    );
    // Registered with msp-core: the shared error layer knows it.
    assert_eq!(problem_for(&err).status(), 401);

    let res = err.into_response::<http_body_util::Empty<bytes::Bytes>>();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"ApiKey realm="keys", header="x-api-key""#
    );
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["status"], 401);
    assert_eq!(json["code"], "invalid_credentials");
}

#[test]
fn keys_never_show_in_errors_or_debug() {
    let a = auth();
    let err = a
        .authenticate(&headers("x-api-key", "leaky-secret"), None)
        .expect_err("bad");
    assert!(!format!("{err} {err:?}").contains("leaky-secret"));
    assert!(!format!("{a:?}").contains(&hash_api_key("web-key")));
}

#[test]
fn plain_text_keys_in_the_config_are_refused() {
    let err = ApiKeyAuth::new("k", &ApiKeyConfig::new().consumer("c", "not-a-digest"))
        .expect_err("plain");
    assert_eq!(err, InvalidApiKeyConfig::Digest("c".into()));
    assert!(ApiKeyAuth::new("k", &ApiKeyConfig::new().header("bad header")).is_err());
}

#[test]
fn the_gateway_config_provider_builds_an_authenticator() {
    let yaml = format!(
        "auth:\n  providers:\n    keys:\n      api_key:\n        consumers:\n          - {{ name: web, key_sha256: {} }}\n",
        hash_api_key("web-key")
    );
    let config = GatewayConfig::from_yaml(&yaml, "t.yaml").expect("valid");
    let AuthProviderConfig::ApiKey(k) = &config.auth().providers["keys"] else {
        panic!("api key provider");
    };
    let a = ApiKeyAuth::new("keys", k).expect("valid");
    assert_eq!(
        a.authenticate(&headers("x-api-key", "web-key"), None)
            .expect("ok")
            .name(),
        "web"
    );
}

#[test]
fn identity_headers_are_stripped_whole_and_set_from_the_identity_only() {
    use msp_gateway::auth::{Identity, IdentityHeaders};
    use msp_gateway::config::IdentityHeadersConfig;
    let ids = IdentityHeaders::new(&IdentityHeadersConfig::default()).expect("defaults");
    let mut h = HeaderMap::new();
    h.append("x-consumer", HeaderValue::from_static("a"));
    h.append("x-consumer", HeaderValue::from_static("b"));
    h.insert("x-jwt-sub", HeaderValue::from_static("root"));
    h.insert("x-auth-provider", HeaderValue::from_static("keys"));
    h.insert("x-jwt-claim-anything", HeaderValue::from_static("x"));
    h.insert("x-api-key", HeaderValue::from_static("web-key"));
    h.insert("x-other", HeaderValue::from_static("kept"));
    let consumer = auth().authenticate(&h, None).expect("key");
    ids.strip(&mut h);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h["x-other"], "kept");

    ids.set(&mut h, &Identity::from_consumer("keys", &consumer));
    assert_eq!(h["x-consumer"], "web");
    assert_eq!(h["x-auth-provider"], "keys");
    assert!(!h.contains_key("x-jwt-sub"), "an API key has no subject");
}

#[test]
fn custom_identity_header_names_are_used_and_checked() {
    use msp_gateway::auth::IdentityHeaders;
    use msp_gateway::config::IdentityHeadersConfig;
    let mut config = IdentityHeadersConfig::default();
    config.consumer = "x-user".into();
    config.claim_prefix = "X-Claim-".into();
    let ids = IdentityHeaders::new(&config).expect("valid");
    let mut h = HeaderMap::new();
    h.insert("x-user", HeaderValue::from_static("spoof"));
    h.insert("x-claim-role", HeaderValue::from_static("admin"));
    h.insert("x-consumer", HeaderValue::from_static("not ours any more"));
    ids.strip(&mut h);
    assert_eq!(
        h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["x-consumer"]
    );

    config.subject = "bad header".into();
    assert!(IdentityHeaders::new(&config).is_err());
    let yaml = "auth:\n  identity_headers:\n    consumer: \"bad header\"\n";
    let err = GatewayConfig::from_yaml(yaml, "t.yaml").expect_err("invalid");
    assert_eq!(err.problems()[0].field(), "auth.identity_headers.consumer");
}

// ---- JWT providers: load-time checks (tokens are tested in tests/jwt.rs) ----

fn problems(yaml: &str) -> Vec<(String, String)> {
    let err = GatewayConfig::from_yaml(yaml, "bad.yaml").expect_err("invalid");
    err.problems()
        .iter()
        .map(|p| (p.field().to_owned(), p.message().to_owned()))
        .collect()
}

fn jwt_yaml(body: &str) -> String {
    format!("auth:\n  providers:\n    idp:\n      jwt:\n{body}")
}

#[test]
fn bad_jwt_providers_are_load_errors_naming_provider_and_field() {
    let found = problems(&jwt_yaml(
        "        algorithms: [RS256, XS999]\n        jwks: { url: \"http://127.0.0.1:1/jwks\" }\n",
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "auth.providers.idp.jwt.algorithms[1]");
    assert!(found[0].1.contains("XS999"));

    let found = problems(&jwt_yaml("        algorithms: [HS256]\n"));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.secret_base64");
    assert!(found[0].1.contains("secret"), "{found:?}");

    let found = problems(&jwt_yaml("        algorithms: [ES256]\n"));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.jwks");

    let found = problems(&jwt_yaml(
        "        algorithms: [RS256, HS256]\n        jwks: { url: \"http://127.0.0.1:1/jwks\" }\n",
    ));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.algorithms[1]");
    assert!(found[0].1.contains("cannot share"));

    let found = problems(&jwt_yaml(
        "        algorithms: [RS256]\n        jwks: { url: \"https://idp.example.com/jwks\" }\n",
    ));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.jwks.url");

    let found = problems(&jwt_yaml(
        "        algorithms: [RS256]\n        secret_base64: c2VjcmV0\n        jwks: { file: jwks.json }\n",
    ));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.secret_base64");

    let found = problems(&jwt_yaml(
        "        algorithms: [RS256]\n        forward_claims: [\"a b\"]\n        jwks: { file: jwks.json }\n",
    ));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.forward_claims[0]");

    let found = problems(&jwt_yaml("        algorithms: []\n        secret_env: S\n"));
    assert_eq!(found[0].0, "auth.providers.idp.jwt.algorithms");
}

#[test]
fn a_sub_second_min_refresh_in_a_file_is_a_load_error() {
    let found = problems(&jwt_yaml(
        "        algorithms: [RS256]\n        jwks: { url: \"http://127.0.0.1:1/jwks\", min_refresh: 500ms, max_refresh: 500ms }\n",
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "auth.providers.idp.jwt.jwks.min_refresh");
    assert!(found[0].1.contains("at least 1s"), "{found:?}");
}

#[test]
fn a_plain_http_jwks_url_to_another_host_is_a_load_error() {
    for url in [
        "http://idp.example.com/jwks",
        "http://10.0.0.7:8080/jwks",
        "http://[2001:db8::1]/jwks",
        "http://localhost.example.com/jwks",
    ] {
        let found = problems(&jwt_yaml(&format!(
            "        algorithms: [RS256]\n        jwks: {{ url: \"{url}\" }}\n"
        )));
        assert_eq!(found.len(), 1, "{url}: {found:?}");
        assert_eq!(found[0].0, "auth.providers.idp.jwt.jwks.url", "{url}");
        assert!(found[0].1.contains("loopback"), "{found:?}");
        assert!(found[0].1.contains("file"), "{found:?}");
    }
}

#[tokio::test]
async fn hmac_secrets_must_exist_and_be_long_enough() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use msp_gateway::auth::{InvalidJwtConfig, JwtAuth};
    use msp_gateway::config::JwtConfig;
    let mut config = JwtConfig::new(["HS256"]);
    config.secret_env = Some("MSP_GATEWAY_TEST_UNSET_SECRET_VARIABLE".into());
    let err = JwtAuth::new("hs", &config).expect_err("unset variable");
    assert!(
        matches!(err, InvalidJwtConfig::Secret(ref m) if m.contains("is not set")),
        "{err}"
    );
    let short = JwtConfig::new(["HS256"]).secret_base64(STANDARD.encode([1u8; 16]));
    let err = JwtAuth::new("hs", &short).expect_err("16 bytes");
    assert!(err.to_string().contains("at least 32"), "{err}");
}
