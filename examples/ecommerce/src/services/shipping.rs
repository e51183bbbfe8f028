//! shipping-service: shipments, idempotent by `Idempotency-Key`.
//!
//! `POST /shipments` `{order_id, address}` creates a shipment once per key
//! (201; a replay answers 200). An address containing the configured
//! marker (`FAIL` by default) is refused with 422 `undeliverable`, a
//! permanent failure the place-order saga compensates.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use tower::ServiceExt;
//! let dir = tempfile::tempdir()?;
//! let db = ecommerce::platform::open_db(dir.path(), "shipping.db").await?;
//! use ecommerce::services::shipping;
//! shipping::migrate(&db).await?;
//! let app = shipping::routes(db, "FAIL");
//! let ship = |address: &str| {
//!     http::Request::post("/shipments")
//!         .header("content-type", "application/json")
//!         .header("idempotency-key", format!("{address}:shipping"))
//!         .body(axum::body::Body::from(format!(r#"{{"order_id":"o","address":"{address}"}}"#)))
//! };
//! assert_eq!(app.clone().oneshot(ship("1 Main St")?).await?.status(), 201);
//! assert_eq!(app.oneshot(ship("FAIL street")?).await?.status(), 422);
//! # Ok(())
//! # }
//! ```

use super::{ApiError, idempotency_key, now_ms};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use std::sync::Arc;

/// A shipment.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct Shipment {
    /// The order shipped.
    pub order_id: String,
    /// Where to.
    pub address: String,
}

/// Creates the table.
pub async fn migrate(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS shipments (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, \
         address TEXT NOT NULL, at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Clone)]
struct Ctx {
    db: SqlitePool,
    fail_marker: Arc<str>,
}

/// The service's routes; addresses containing `fail_marker` are refused.
pub fn routes(db: SqlitePool, fail_marker: &str) -> Router {
    Router::new()
        .route("/shipments", post(create))
        .with_state(Ctx {
            db,
            fail_marker: fail_marker.into(),
        })
}

async fn create(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(req): Json<Shipment>,
) -> Result<(StatusCode, Json<Shipment>), ApiError> {
    let key = idempotency_key(&headers)?;
    if !ctx.fail_marker.is_empty() && req.address.contains(&*ctx.fail_marker) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "undeliverable",
            format!("no courier delivers to {:?}", req.address),
        ));
    }
    let mut tx = ctx.db.begin().await?;
    let existing: Option<Shipment> =
        sqlx::query_as("SELECT order_id, address FROM shipments WHERE key = ?")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(existing) = existing {
        return Ok((StatusCode::OK, Json(existing)));
    }
    sqlx::query("INSERT INTO shipments (key, order_id, address, at) VALUES (?, ?, ?, ?)")
        .bind(&key)
        .bind(&req.order_id)
        .bind(&req.address)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(req)))
}
