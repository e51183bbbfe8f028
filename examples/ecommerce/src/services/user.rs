//! user-service: accounts, logins that issue JWTs the gateway trusts, and
//! sessions with refresh tokens.
//!
//! - `POST /api/auth/signup` `{email, password}`: 201, or 409 `exists`.
//!   Passwords are stored as Argon2id hashes (PHC strings, the argon2
//!   crate's defaults: 19 MiB, 2 passes).
//! - `POST /api/auth/login` `{email, password}`: 200 `{access_token,
//!   token_type: "Bearer", expires_in, refresh_token}`; 401
//!   `bad_credentials` otherwise. The access token is an EdDSA JWT
//!   ([`tokens`]) with `sub` (the email), `iss`, `aud`, `exp`, `iat`, `jti`
//!   and `sid`, the login's session ([`sessions`]).
//! - `POST /api/auth/refresh` `{refresh_token}`: a new access token and a
//!   new refresh token (the one sent stops working); 401
//!   `invalid_refresh_token` once the session ended or expired.
//! - `POST /api/auth/logout` `{refresh_token}`: 204; the session ends, so
//!   its refresh token is refused from then on.
//! - `GET /.well-known/jwks.json`: the public key the gateway verifies the
//!   tokens with (its `users` provider; [`trust_in_gateway`] points it
//!   here).
//! - `GET /api/users/{email}`: the profile, to its own account only (the
//!   gateway's `x-consumer`), else 403.
//! - `POST /api/users/{email}/api-keys`: an API key for the account's
//!   machine clients (scripts, devices), added to the gateway's API-key
//!   consumers through a [`KeyIssuer`]; answered `{api_key, consumer}`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! # let dir = tempfile::tempdir()?;
//! # let config = ecommerce::SystemConfig {
//! #     data_dir: dir.path().to_path_buf(),
//! #     gateway_listen: Some("127.0.0.1:0".parse()?),
//! #     ..Default::default()
//! # };
//! let system = ecommerce::System::start(config).await?;
//! let gw = ecommerce::demo::Http::new(system.gateway_url());
//! let me = serde_json::json!({"email": "ada@example.com", "password": "correct horse"});
//! assert_eq!(gw.post("/api/auth/signup", None, me.clone()).await?.0, 201);
//! let (_, login) = gw.post("/api/auth/login", None, me).await?;
//! assert_eq!(login["token_type"], "Bearer");
//! let token = login["access_token"].as_str().ok_or("a token")?;
//! let (status, profile) = gw.get_bearer("/api/users/ada@example.com", token).await?;
//! assert_eq!((status.as_u16(), &profile["email"]), (200, &serde_json::json!("ada@example.com")));
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

pub mod sessions;
pub mod tokens;

use super::{ApiError, now_ms};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use http::StatusCode;
use msp_core::BoxError;
use msp_gateway::auth::hash_api_key;
use msp_gateway::config::{AuthProviderConfig, GatewayConfig, JwksConfig};
use serde::{Deserialize, Serialize};
use sessions::{Session, SessionStore};
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokens::TokenIssuer;

/// The gateway's JWT provider that trusts user-service's tokens (named in
/// `config/gateway.yaml`).
pub const JWT_PROVIDER: &str = "users";

/// Where user-service serves its JWK set.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Where issued keys go: called with the consumer name and the key's
/// SHA-256 (hex) before the answer.
pub type KeyIssuer =
    Arc<dyn Fn(String, String) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// Signup and login bodies.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Credentials {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// A login's or a refresh's answer (RFC 6749 §5.1's shape).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenReply {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token is valid for.
    pub expires_in: u64,
    /// Exchanges for the next access token at `/api/auth/refresh`.
    pub refresh_token: String,
}

/// The body of `/api/auth/refresh` and `/api/auth/logout`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RefreshRequest {
    /// The session's current refresh token.
    pub refresh_token: String,
}

/// An API key for machine clients.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiKeyReply {
    /// Send it as `x-api-key`.
    pub api_key: String,
    /// The gateway consumer it identifies (the account's email).
    pub consumer: String,
}

/// A profile.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct Profile {
    /// The account's email.
    pub email: String,
    /// When it signed up (ms since the Unix epoch).
    pub created_at: i64,
}

/// What the routes need besides their database.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Signs access tokens, publishes the JWK set.
    pub tokens: Arc<TokenIssuer>,
    /// Login sessions.
    pub sessions: SessionStore,
    /// Where API keys for machine clients go.
    pub keys: KeyIssuerHandle,
}

/// A [`KeyIssuer`] with a `Debug` impl.
#[derive(Clone)]
pub struct KeyIssuerHandle(pub KeyIssuer);

impl std::fmt::Debug for KeyIssuerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyIssuer")
    }
}

/// Creates the tables.
pub async fn migrate(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS accounts (email TEXT PRIMARY KEY, password_phc TEXT NOT NULL, \
         created_at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS api_keys (key_sha256 TEXT PRIMARY KEY, email TEXT NOT NULL, \
         created_at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Points the gateway's [`JWT_PROVIDER`] at the JWK set of user-service
/// listening on `addr` (its port is the OS's choice, known once it runs).
/// A config without that provider is returned as it is (a warning is
/// logged); one where it is not a `jwt` provider is an error.
pub fn trust_in_gateway(
    config: &GatewayConfig,
    addr: SocketAddr,
) -> Result<GatewayConfig, BoxError> {
    let url = format!("http://{addr}{JWKS_PATH}");
    let provider = match config.auth().providers.get(JWT_PROVIDER) {
        Some(AuthProviderConfig::Jwt(jwt)) => {
            let mut jwt = jwt.clone();
            let mut jwks = jwt.jwks.clone().unwrap_or_else(|| JwksConfig::url(&url));
            jwks.url = Some(url);
            jwks.file = None;
            jwt.jwks = Some(jwks);
            AuthProviderConfig::Jwt(jwt)
        }
        // A gateway config of its own (`--gateway-config`) may take API
        // keys only: then logins work, their tokens just open nothing.
        None => {
            tracing::warn!(
                provider = JWT_PROVIDER,
                "the gateway config has no provider for user-service's tokens"
            );
            return Ok(config.clone());
        }
        Some(_) => {
            return Err(format!(
                "the gateway's auth provider {JWT_PROVIDER:?} must be a jwt provider (user-service's tokens)"
            )
            .into());
        }
    };
    Ok(config
        .to_builder()
        .auth_provider(JWT_PROVIDER, provider)
        .build()?)
}

#[derive(Clone)]
struct Ctx {
    db: SqlitePool,
    auth: Auth,
}

/// The service's routes.
pub fn routes(db: SqlitePool, auth: Auth) -> Router {
    Router::new()
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route(JWKS_PATH, get(jwks))
        .route("/api/users/{email}", get(profile))
        .route("/api/users/{email}/api-keys", post(api_key))
        .with_state(Ctx { db, auth })
}

/// Argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's
/// minimum), off the async threads.
async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// A hash of a password nobody has: an unknown email costs a login the
/// same verification as a known one.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(b"no account has this password", &salt)
        .map(|h| h.to_string())
        .ok()
});

/// Whether `password` matches the PHC string `phc` (or, with none, runs
/// the same work against [`DUMMY_HASH`] and says no).
async fn verify_password(phc: Option<String>, password: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let Some(phc) = phc.or_else(|| DUMMY_HASH.clone()) else {
            return false;
        };
        let ok = PasswordHash::new(&phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        known && ok
    })
    .await
    .map_err(ApiError::internal)
}

async fn signup(
    State(ctx): State<Ctx>,
    Json(c): Json<Credentials>,
) -> Result<(StatusCode, Json<Profile>), ApiError> {
    if !c.email.contains('@')
        || c.email.len() > 254
        || c.password.len() < 8
        || c.password.len() > 1024
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_credentials_format",
            "an email and a password of 8 to 1024 characters",
        ));
    }
    let profile = Profile {
        email: c.email,
        created_at: now_ms(),
    };
    let phc = hash_password(c.password).await?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO accounts (email, password_phc, created_at) VALUES (?, ?, ?)",
    )
    .bind(&profile.email)
    .bind(phc)
    .bind(profile.created_at)
    .execute(&ctx.db)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            "this email already has an account",
        ));
    }
    Ok((StatusCode::CREATED, Json(profile)))
}

fn tokens_for(ctx: &Ctx, session: &Session, refresh_token: String) -> Result<TokenReply, ApiError> {
    let (access_token, _) = ctx
        .auth
        .tokens
        .issue(&session.sub, &session.sid)
        .map_err(ApiError::internal)?;
    Ok(TokenReply {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: ctx.auth.tokens.settings().access_ttl.as_secs(),
        refresh_token,
    })
}

async fn login(
    State(ctx): State<Ctx>,
    Json(c): Json<Credentials>,
) -> Result<Json<TokenReply>, ApiError> {
    let phc: Option<String> =
        sqlx::query_scalar("SELECT password_phc FROM accounts WHERE email = ?")
            .bind(&c.email)
            .fetch_optional(&ctx.db)
            .await?;
    if c.password.len() > 1024 || !verify_password(phc, c.password).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "unknown email or wrong password",
        ));
    }
    let (session, refresh_token) = ctx
        .auth
        .sessions
        .create(&c.email)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(tokens_for(&ctx, &session, refresh_token)?))
}

async fn refresh(
    State(ctx): State<Ctx>,
    Json(r): Json<RefreshRequest>,
) -> Result<Json<TokenReply>, ApiError> {
    let Some((session, next)) = ctx
        .auth
        .sessions
        .refresh(&r.refresh_token)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "the session ended or expired, or the token was already used: log in again",
        ));
    };
    Ok(Json(tokens_for(&ctx, &session, next)?))
}

async fn logout(
    State(ctx): State<Ctx>,
    Json(r): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    // Idempotent, like RFC 7009's revocation: an unknown token is no error.
    ctx.auth
        .sessions
        .end(&r.refresh_token)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn jwks(
    State(ctx): State<Ctx>,
) -> (
    [(http::HeaderName, &'static str); 1],
    Json<serde_json::Value>,
) {
    // The gateway refreshes within its bounds (1 min .. 1 h) per max-age.
    (
        [(http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(ctx.auth.tokens.jwks().clone()),
    )
}

/// The account the gateway authenticated (`x-consumer`: the token's `sub`
/// or the API key's consumer) must be `email`.
fn only_self(headers: &HeaderMap, email: &str) -> Result<(), ApiError> {
    match headers.get("x-consumer").and_then(|v| v.to_str().ok()) {
        Some(consumer) if consumer == email => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the account itself may do this",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "call through the gateway with a token",
        )),
    }
}

async fn profile(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    only_self(&headers, &email)?;
    sqlx::query_as("SELECT email, created_at FROM accounts WHERE email = ?")
        .bind(&email)
        .fetch_optional(&ctx.db)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {email}")))
}

async fn api_key(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> Result<(StatusCode, Json<ApiKeyReply>), ApiError> {
    only_self(&headers, &email)?;
    let api_key = format!("msp_{}", uuid::Uuid::new_v4().simple());
    let digest = hash_api_key(&api_key);
    sqlx::query("INSERT INTO api_keys (key_sha256, email, created_at) VALUES (?, ?, ?)")
        .bind(&digest)
        .bind(&email)
        .bind(now_ms())
        .execute(&ctx.db)
        .await?;
    (ctx.auth.keys.0)(email.clone(), digest)
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyReply {
            api_key,
            consumer: email,
        }),
    ))
}

/// Builds user-service's [`Auth`]: the signing key in `dir` (created on
/// first run), sessions in Redis when `redis_url` is given (keys under
/// `redis_prefix`) else in memory, both living `session_ttl`.
pub fn auth(
    dir: &std::path::Path,
    redis_url: Option<&str>,
    redis_prefix: &str,
    session_ttl: Duration,
    keys: KeyIssuer,
) -> Result<Auth, BoxError> {
    let tokens = TokenIssuer::load_or_create(
        &dir.join("jwt-ed25519.pk8"),
        tokens::TokenSettings::default(),
    )?;
    let sessions = match redis_url {
        None => SessionStore::memory(session_ttl),
        #[cfg(feature = "redis")]
        Some(url) => SessionStore::redis(url, redis_prefix, session_ttl)?,
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            let _ = redis_prefix;
            return Err("sessions in Redis need the `redis` feature of ecommerce".into());
        }
    };
    Ok(Auth {
        tokens: Arc::new(tokens),
        sessions,
        keys: KeyIssuerHandle(keys),
    })
}
