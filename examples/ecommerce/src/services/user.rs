//! user-service: accounts, and logins that issue API keys the gateway
//! accepts.
//!
//! - `POST /api/auth/signup` `{email, password}`: 201, or 409 `exists`.
//! - `POST /api/auth/login` `{email, password}`: 200 `{api_key, consumer}`;
//!   the key's SHA-256 is handed to a [`KeyIssuer`] (the system adds it to
//!   the gateway's API-key consumers), then the key works on every
//!   `auth_required` route. 401 `bad_credentials` otherwise.
//! - `GET /api/users/{email}`: the profile (behind the gateway's auth).
//!
//! First cut: passwords are stored as a salted SHA-256 (not a slow
//! password hash), and keys are API keys, not JWTs (issue 11).
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
//! let key = login["api_key"].as_str().ok_or("a key")?;
//! let (status, profile) = gw.get("/api/users/ada@example.com", Some(key)).await?;
//! assert_eq!((status.as_u16(), &profile["email"]), (200, &serde_json::json!("ada@example.com")));
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

use super::{ApiError, now_ms};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use http::StatusCode;
use msp_core::BoxError;
use msp_gateway::auth::hash_api_key;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use std::sync::Arc;

/// Where issued keys go: called with the consumer name and the key's
/// SHA-256 (hex) before the login answers.
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

/// A login's answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LoginReply {
    /// Send it as `x-api-key`.
    pub api_key: String,
    /// The gateway consumer it identifies.
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

/// Creates the tables.
pub async fn migrate(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS users (email TEXT PRIMARY KEY, salt TEXT NOT NULL, \
         password_sha256 TEXT NOT NULL, created_at INTEGER NOT NULL)",
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

#[derive(Clone)]
struct Ctx {
    db: SqlitePool,
    issuer: KeyIssuer,
}

/// The service's routes.
pub fn routes(db: SqlitePool, issuer: KeyIssuer) -> Router {
    Router::new()
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/login", post(login))
        .route("/api/users/{email}", get(profile))
        .with_state(Ctx { db, issuer })
}

fn password_digest(salt: &str, password: &str) -> String {
    hash_api_key(&format!("{salt}:{password}"))
}

async fn signup(
    State(ctx): State<Ctx>,
    Json(c): Json<Credentials>,
) -> Result<(StatusCode, Json<Profile>), ApiError> {
    if !c.email.contains('@') || c.email.len() > 254 || c.password.len() < 8 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_credentials_format",
            "an email and a password of at least 8 characters",
        ));
    }
    let salt = uuid::Uuid::new_v4().simple().to_string();
    let profile = Profile {
        email: c.email,
        created_at: now_ms(),
    };
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO users (email, salt, password_sha256, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&profile.email)
    .bind(&salt)
    .bind(password_digest(&salt, &c.password))
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

async fn login(
    State(ctx): State<Ctx>,
    Json(c): Json<Credentials>,
) -> Result<Json<LoginReply>, ApiError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT salt, password_sha256 FROM users WHERE email = ?")
            .bind(&c.email)
            .fetch_optional(&ctx.db)
            .await?;
    let ok = row.is_some_and(|(salt, digest)| password_digest(&salt, &c.password) == digest);
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "unknown email or wrong password",
        ));
    }
    let api_key = format!("msp_{}", uuid::Uuid::new_v4().simple());
    let digest = hash_api_key(&api_key);
    sqlx::query("INSERT INTO api_keys (key_sha256, email, created_at) VALUES (?, ?, ?)")
        .bind(&digest)
        .bind(&c.email)
        .bind(now_ms())
        .execute(&ctx.db)
        .await?;
    (ctx.issuer)(c.email.clone(), digest)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(LoginReply {
        api_key,
        consumer: c.email,
    }))
}

async fn profile(
    State(ctx): State<Ctx>,
    Path(email): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    sqlx::query_as("SELECT email, created_at FROM users WHERE email = ?")
        .bind(&email)
        .fetch_optional(&ctx.db)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {email}")))
}
