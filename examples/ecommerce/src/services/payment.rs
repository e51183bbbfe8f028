//! payment-service: charges and refunds, idempotent by `Idempotency-Key`.
//!
//! - `POST /charges` `{order_id, cents}` with an `Idempotency-Key`: charges
//!   once per key (201; a replay answers 200 with the same charge).
//! - `POST /charges/{key}/refund`: refunds the charge made with `key`
//!   (idempotent; refunding an unknown key leaves a tombstone so a late
//!   charge with that key charges nothing).
//! - `GET /charges/{key}`: the charge and its state.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use tower::ServiceExt;
//! let dir = tempfile::tempdir()?;
//! let db = ecommerce::platform::open_db(dir.path(), "payments.db").await?;
//! use ecommerce::services::payment;
//! payment::migrate(&db).await?;
//! let app = payment::routes(db);
//! let refund = http::Request::post("/charges/order-1:payment/refund").body(axum::body::Body::empty())?;
//! // Refunding a charge that never happened leaves a tombstone…
//! assert_eq!(app.clone().oneshot(refund).await?.status(), 200);
//! let late = http::Request::post("/charges")
//!     .header("content-type", "application/json")
//!     .header("idempotency-key", "order-1:payment")
//!     .body(axum::body::Body::from(r#"{"order_id":"order-1","cents":100}"#))?;
//! // …so a late charge with that key charges nothing.
//! assert_eq!(app.oneshot(late).await?.status(), 200);
//! # Ok(())
//! # }
//! ```

use super::{ApiError, idempotency_key, now_ms};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

/// A charge request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChargeRequest {
    /// The order paid for.
    pub order_id: String,
    /// The amount, in cents.
    pub cents: i64,
}

/// A charge.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct Charge {
    /// The `Idempotency-Key` it was made with.
    pub key: String,
    /// The order paid for.
    pub order_id: String,
    /// The amount, in cents.
    pub cents: i64,
    /// `charged` or `refunded`.
    pub state: String,
}

/// Creates the table.
pub async fn migrate(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, \
         cents INTEGER NOT NULL, state TEXT NOT NULL, at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The service's routes.
pub fn routes(db: SqlitePool) -> Router {
    Router::new()
        .route("/charges", post(charge))
        .route("/charges/{key}", get(get_charge))
        .route("/charges/{key}/refund", post(refund))
        .with_state(db)
}

async fn find(db: &mut sqlx::SqliteConnection, key: &str) -> Result<Option<Charge>, sqlx::Error> {
    sqlx::query_as("SELECT key, order_id, cents, state FROM charges WHERE key = ?")
        .bind(key)
        .fetch_optional(db)
        .await
}

async fn charge(
    State(db): State<SqlitePool>,
    headers: HeaderMap,
    Json(req): Json<ChargeRequest>,
) -> Result<(StatusCode, Json<Charge>), ApiError> {
    let key = idempotency_key(&headers)?;
    if req.cents <= 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_amount",
            "the amount must be positive",
        ));
    }
    let mut tx = db.begin().await?;
    if let Some(existing) = find(&mut tx, &key).await? {
        return Ok((StatusCode::OK, Json(existing)));
    }
    let charge = Charge {
        key,
        order_id: req.order_id,
        cents: req.cents,
        state: "charged".into(),
    };
    sqlx::query(
        "INSERT INTO charges (key, order_id, cents, state, at) VALUES (?, ?, ?, 'charged', ?)",
    )
    .bind(&charge.key)
    .bind(&charge.order_id)
    .bind(charge.cents)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(charge)))
}

async fn refund(
    State(db): State<SqlitePool>,
    Path(key): Path<String>,
) -> Result<Json<Charge>, ApiError> {
    let mut tx = db.begin().await?;
    let refunded = match find(&mut tx, &key).await? {
        Some(c) if c.state == "charged" => {
            sqlx::query("UPDATE charges SET state = 'refunded' WHERE key = ?")
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            Charge {
                state: "refunded".into(),
                ..c
            }
        }
        Some(c) => c,
        None => {
            sqlx::query("INSERT INTO charges (key, order_id, cents, state, at) VALUES (?, '', 0, 'refunded', ?)")
                .bind(&key)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            Charge {
                key,
                order_id: String::new(),
                cents: 0,
                state: "refunded".into(),
            }
        }
    };
    tx.commit().await?;
    Ok(Json(refunded))
}

async fn get_charge(
    State(db): State<SqlitePool>,
    Path(key): Path<String>,
) -> Result<Json<Charge>, ApiError> {
    let mut conn = db.acquire().await?;
    find(&mut conn, &key)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no charge {key}")))
}
