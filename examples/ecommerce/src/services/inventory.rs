//! inventory-service: stock per SKU and reservations against it.
//!
//! - `POST /reservations` `{sku, quantity}` with an `Idempotency-Key`:
//!   reserves stock once per key (201, or 200 with the same reservation on
//!   a replay; 409 `out_of_stock`).
//! - `POST /reservations/{key}/release`: gives the stock back (idempotent;
//!   releasing an unknown key leaves a tombstone so a late reserve with
//!   that key reserves nothing).
//! - `GET /stock/{sku}`: `{sku, available}`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use tower::ServiceExt;
//! let dir = tempfile::tempdir()?;
//! let db = ecommerce::platform::open_db(dir.path(), "inventory.db").await?;
//! use ecommerce::services::inventory;
//! inventory::migrate(&db, &[("mug-1", 5)]).await?;
//! let app = inventory::routes(db);
//! let reserve = || {
//!     http::Request::post("/reservations")
//!         .header("content-type", "application/json")
//!         .header("idempotency-key", "order-1:inventory")
//!         .body(axum::body::Body::from(r#"{"sku":"mug-1","quantity":2}"#))
//! };
//! assert_eq!(app.clone().oneshot(reserve()?).await?.status(), 201);
//! assert_eq!(app.clone().oneshot(reserve()?).await?.status(), 200); // a replay: no second effect
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

/// A reservation request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Reserve {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
}

/// A reservation.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct Reservation {
    /// The `Idempotency-Key` it was made with.
    pub key: String,
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// `reserved` or `released`.
    pub state: String,
}

/// Stock levels.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct Stock {
    /// The product.
    pub sku: String,
    /// Units not reserved.
    pub available: i64,
}

/// Creates the tables and seeds `stock` (existing rows are kept).
pub async fn migrate(db: &SqlitePool, stock: &[(&str, i64)]) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL CHECK (available >= 0))")
        .execute(db)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS reservations (key TEXT PRIMARY KEY, sku TEXT NOT NULL, \
         quantity INTEGER NOT NULL, state TEXT NOT NULL, at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    for (sku, n) in stock {
        sqlx::query("INSERT OR IGNORE INTO stock (sku, available) VALUES (?, ?)")
            .bind(sku)
            .bind(n)
            .execute(db)
            .await?;
    }
    Ok(())
}

/// The service's routes.
pub fn routes(db: SqlitePool) -> Router {
    Router::new()
        .route("/reservations", post(reserve))
        .route("/reservations/{key}/release", post(release))
        .route("/stock/{sku}", get(stock))
        .with_state(db)
}

async fn find(
    conn: &mut sqlx::SqliteConnection,
    key: &str,
) -> Result<Option<Reservation>, sqlx::Error> {
    sqlx::query_as("SELECT key, sku, quantity, state FROM reservations WHERE key = ?")
        .bind(key)
        .fetch_optional(conn)
        .await
}

async fn reserve(
    State(db): State<SqlitePool>,
    headers: HeaderMap,
    Json(req): Json<Reserve>,
) -> Result<(StatusCode, Json<Reservation>), ApiError> {
    let key = idempotency_key(&headers)?;
    if req.quantity <= 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_quantity",
            "quantity must be positive",
        ));
    }
    // A concurrent duplicate of this key fails on the primary key or the
    // write lock and is answered 500, which the caller retries into a 200.
    let mut tx = db.begin().await?;
    if let Some(existing) = find(&mut tx, &key).await? {
        return Ok((StatusCode::OK, Json(existing)));
    }
    let taken =
        sqlx::query("UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?")
            .bind(req.quantity)
            .bind(&req.sku)
            .bind(req.quantity)
            .execute(&mut *tx)
            .await?;
    if taken.rows_affected() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "out_of_stock",
            format!("not enough {} in stock", req.sku),
        ));
    }
    let reservation = Reservation {
        key,
        sku: req.sku,
        quantity: req.quantity,
        state: "reserved".into(),
    };
    sqlx::query(
        "INSERT INTO reservations (key, sku, quantity, state, at) VALUES (?, ?, ?, 'reserved', ?)",
    )
    .bind(&reservation.key)
    .bind(&reservation.sku)
    .bind(reservation.quantity)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(reservation)))
}

async fn release(
    State(db): State<SqlitePool>,
    Path(key): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    let mut tx = db.begin().await?;
    let released = match find(&mut tx, &key).await? {
        Some(r) if r.state == "reserved" => {
            sqlx::query("UPDATE stock SET available = available + ? WHERE sku = ?")
                .bind(r.quantity)
                .bind(&r.sku)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE reservations SET state = 'released' WHERE key = ?")
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            Reservation {
                state: "released".into(),
                ..r
            }
        }
        Some(r) => r,
        None => {
            sqlx::query("INSERT INTO reservations (key, sku, quantity, state, at) VALUES (?, '', 0, 'released', ?)")
                .bind(&key)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            Reservation {
                key,
                sku: String::new(),
                quantity: 0,
                state: "released".into(),
            }
        }
    };
    tx.commit().await?;
    Ok(Json(released))
}

async fn stock(
    State(db): State<SqlitePool>,
    Path(sku): Path<String>,
) -> Result<Json<Stock>, ApiError> {
    sqlx::query_as("SELECT sku, available FROM stock WHERE sku = ?")
        .bind(&sku)
        .fetch_optional(&db)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no stock record for {sku}")))
}
