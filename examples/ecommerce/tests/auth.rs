//! user-service's logins through the gateway: JWTs verified against its
//! JWK set, refused when tampered with, expired or signed by another key;
//! sessions refreshed and ended, in memory and in the real Redis on
//! 127.0.0.1:6379 (skipped without it under plain `cargo test`, failed
//! under `MSP_REQUIRE_BACKENDS=1`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ecommerce::demo::Http;
use ecommerce::services::user::tokens::{Claims, TokenIssuer, TokenSettings};
use ecommerce::{System, SystemConfig};
use http::StatusCode;
use serde_json::{Value, json};

fn config(dir: &tempfile::TempDir) -> SystemConfig {
    SystemConfig {
        data_dir: dir.path().to_path_buf(),
        gateway_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SystemConfig::default()
    }
}

/// Signs up `email` and logs in: the login's answer.
async fn sign_up_and_log_in(gw: &Http, email: &str) -> Value {
    let creds = json!({"email": email, "password": "correct horse"});
    let (status, body) = gw
        .post("/api/auth/signup", None, creds.clone())
        .await
        .expect("signup");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, login) = gw
        .post("/api/auth/login", None, creds)
        .await
        .expect("login");
    assert_eq!(status, StatusCode::OK, "{login}");
    login
}

fn access(login: &Value) -> String {
    login["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

fn refresh_token(login: &Value) -> String {
    login["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// The JWT's claims, decoded without verifying (what the test reads).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_jwt_works_through_the_gateway_and_bad_tokens_get_401() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = System::start(config(&dir)).await.expect("system starts");
    let gw = Http::new(system.gateway_url());
    let ada = "ada@example.com";
    let login = sign_up_and_log_in(&gw, ada).await;
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["expires_in"], 900);
    let token = access(&login);

    // The claims the gateway checks and forwards.
    let c = claims(&token);
    assert_eq!(
        (&c["sub"], &c["iss"], &c["aud"]),
        (&json!(ada), &json!("user-service"), &json!("ecommerce"))
    );
    let iat = c["iat"].as_u64().expect("iat");
    assert_eq!(c["exp"].as_u64(), Some(iat + 900));
    assert!(iat.abs_diff(now()) < 60, "{c}");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()), "{c}");
    assert!(c["sid"].as_str().is_some_and(|s| !s.is_empty()), "{c}");

    // The JWK set user-service serves (the gateway fetched it).
    let users = Http::new(format!(
        "http://{}",
        system.service_addr("user-service").expect("runs")
    ));
    let (status, jwks) = users
        .get("/.well-known/jwks.json", None)
        .await
        .expect("jwks");
    assert_eq!(status, StatusCode::OK);
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
    );
    assert!(key.get("d").is_none(), "no private part: {key}");

    // auth_required routes: the JWT works, the gateway forwards its sub.
    let (status, profile) = gw
        .get_bearer(&format!("/api/users/{ada}"), &token)
        .await
        .expect("profile");
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["email"], ada);
    let order = json!({"sku": "mug-1", "quantity": 1, "address": "1 Main St"});
    let (status, placed) = gw
        .post_bearer("/api/orders", &token, order.clone())
        .await
        .expect("order");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["owner"], ada, "the order's owner is the token's sub");
    // Only one's own profile.
    let (status, _) = gw
        .get_bearer("/api/users/someone-else@example.com", &token)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The API key provider still works on the same routes.
    let (status, _) = gw
        .get("/api/orders", Some("demo-key"))
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);

    // Tampered: the payload changed (sub), the signature kept.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut forged = claims(&token);
    forged["sub"] = json!("admin@example.com");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("JSON"));
    let tampered = parts.join(".");
    let (status, _) = gw
        .get_bearer("/api/orders", &tampered)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Expired: signed with user-service's own key, exp 10 min ago (past
    // the gateway's 30 s leeway).
    let issuer = TokenIssuer::load_or_create(
        &dir.path().join("jwt-ed25519.pk8"),
        TokenSettings::default(),
    )
    .expect("the system's key");
    let mut old: Claims = serde_json::from_value(claims(&token)).expect("claims");
    old.iat = now() - 1_500;
    old.exp = now() - 600;
    let expired = issuer.sign(&old).expect("signed");
    assert!(issuer.verify(&expired).is_err());
    let (status, _) = gw
        .get_bearer("/api/orders", &expired)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The same claims, not expired, pass: the refusal above is the expiry.
    old.exp = now() + 600;
    let fresh = issuer.sign(&old).expect("signed");
    let (status, _) = gw.get_bearer("/api/orders", &fresh).await.expect("answer");
    assert_eq!(status, StatusCode::OK);

    // Another key, even naming user-service's kid: refused.
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other =
        TokenIssuer::load_or_create(&other_dir.path().join("k.pk8"), TokenSettings::default())
            .expect("another key");
    let (foreign, _) = other.issue(ada, "sid").expect("signed");
    let (status, _) = gw
        .get_bearer("/api/orders", &foreign)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Wrong password: 401, no token.
    let (status, body) = gw
        .post(
            "/api/auth/login",
            None,
            json!({"email": ada, "password": "wrong password"}),
        )
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.get("access_token").is_none());
    system.stop().await.expect("stops");

    // The password is an Argon2id PHC string, not a digest.
    let db = ecommerce::platform::open_db(dir.path(), "users.db")
        .await
        .expect("db");
    let phc: String = sqlx::query_scalar("SELECT password_phc FROM accounts WHERE email = ?")
        .bind(ada)
        .fetch_one(&db)
        .await
        .expect("the account");
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_outlives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = System::start(config(&dir)).await.expect("system starts");
    let gw = Http::new(system.gateway_url());
    let token = access(&sign_up_and_log_in(&gw, "grace@example.com").await);
    system.stop().await.expect("stops");

    let system = System::start(config(&dir)).await.expect("starts again");
    let gw = Http::new(system.gateway_url());
    let (status, body) = gw.get_bearer("/api/orders", &token).await.expect("answer");
    assert_eq!(status, StatusCode::OK, "{body}");
    system.stop().await.expect("stops");
}

/// Refresh → a new access token (and refresh token); the old refresh
/// token is spent; logout → refresh refused.
async fn refresh_and_logout(gw: &Http, email: &str) -> (String, String) {
    let login = sign_up_and_log_in(gw, email).await;
    let first = refresh_token(&login);
    let sid = claims(&access(&login))["sid"].clone();

    let (status, refreshed) = gw
        .post("/api/auth/refresh", None, json!({"refresh_token": first}))
        .await
        .expect("refresh");
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let token = access(&refreshed);
    assert_ne!(token, access(&login));
    let c = claims(&token);
    assert_eq!(
        (&c["sid"], &c["sub"]),
        (&sid, &json!(email)),
        "same session"
    );
    assert_ne!(c["jti"], claims(&access(&login))["jti"]);
    let (status, _) = gw.get_bearer("/api/orders", &token).await.expect("answer");
    assert_eq!(status, StatusCode::OK);

    let second = refresh_token(&refreshed);
    assert_ne!(second, first, "rotated");
    let (status, body) = gw
        .post("/api/auth/refresh", None, json!({"refresh_token": first}))
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a spent token: {body}");
    assert_eq!(body["code"], "invalid_refresh_token");

    let (status, _) = gw
        .post("/api/auth/logout", None, json!({"refresh_token": second}))
        .await
        .expect("logout");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = gw
        .post("/api/auth/refresh", None, json!({"refresh_token": second}))
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");
    let (status, _) = gw
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": "not a token"}),
        )
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    (sid.as_str().expect("sid").to_owned(), second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_issues_a_new_token_and_logout_ends_the_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = System::start(config(&dir)).await.expect("system starts");
    let gw = Http::new(system.gateway_url());
    refresh_and_logout(&gw, "lin@example.com").await;
    system.stop().await.expect("stops");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_in_redis_with_a_ttl_under_the_systems_prefix() {
    use msp_core::testing::{Backend, backend};
    let Some(url) = backend(Backend::Redis) else {
        return;
    };
    let prefix = format!("ecommerce-test-{}:", uuid::Uuid::new_v4().simple());
    let ttl = std::time::Duration::from_secs(3_600);
    let dir = tempfile::tempdir().expect("temp dir");
    let system = System::start(SystemConfig {
        redis_url: Some(url.clone()),
        redis_prefix: prefix.clone(),
        session_ttl: ttl,
        ..config(&dir)
    })
    .await
    .expect("system starts");
    let gw = Http::new(system.gateway_url());
    let mut redis = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");

    let login = sign_up_and_log_in(&gw, "kay@example.com").await;
    let sid = claims(&access(&login))["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let key = format!("{prefix}session:{sid}");
    let sub: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("sub")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(sub.as_deref(), Some("kay@example.com"));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    assert!(
        pttl > 0 && pttl <= 3_600_000,
        "a TTL of at most an hour: {pttl}"
    );
    // Only the secret's digest is stored.
    let secret: String = redis::cmd("HGET")
        .arg(&key)
        .arg("secret")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    let token = refresh_token(&login);
    assert!(!token.contains(&secret), "the digest, not the secret");
    assert_eq!(secret.len(), 64);

    // The same flow as in memory, then the key is gone.
    let (sid, _) = refresh_and_logout(&gw, "ray@example.com").await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}session:{sid}"))
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "logout deleted the session");

    // Sessions outlive the process: a new system on the same Redis and
    // prefix refreshes the first login.
    system.stop().await.expect("stops");
    let system = System::start(SystemConfig {
        redis_url: Some(url.clone()),
        redis_prefix: prefix.clone(),
        session_ttl: ttl,
        ..config(&dir)
    })
    .await
    .expect("starts again");
    let gw = Http::new(system.gateway_url());
    let (status, body) = gw
        .post("/api/auth/refresh", None, json!({"refresh_token": token}))
        .await
        .expect("refresh");
    assert_eq!(status, StatusCode::OK, "{body}");
    system.stop().await.expect("stops");

    // Clean up this test's keys.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut redis)
            .await
            .expect("DEL");
    }
}

/// A gateway config of one's own without the `users` provider (the load
/// bench's) still starts: API keys work, logins too, their tokens open
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_config_without_the_jwt_provider_takes_api_keys_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = System::start(SystemConfig {
        gateway_yaml: include_str!("../../../benches/ecommerce/gateway-load.yaml").to_owned(),
        ..config(&dir)
    })
    .await
    .expect("system starts");
    let gw = Http::new(system.gateway_url());
    let token = access(&sign_up_and_log_in(&gw, "max@example.com").await);
    let (status, _) = gw.get_bearer("/api/orders", &token).await.expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = gw
        .get("/api/orders", Some("demo-key"))
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    system.stop().await.expect("stops");
}
