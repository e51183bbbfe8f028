//! The seven services, one module each. Each owns its SQLite file and
//! answers errors as RFC 9457 problems ([`ApiError`]).
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use tower::ServiceExt;
//! let dir = tempfile::tempdir()?;
//! let db = ecommerce::platform::open_db(dir.path(), "any.db").await?;
//! use ecommerce::services::payment;
//! payment::migrate(&db).await?;
//! let no_key = http::Request::post("/charges")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(r#"{"order_id":"o","cents":1}"#))?;
//! let res = payment::routes(db).oneshot(no_key).await?;
//! assert_eq!(res.status(), 400);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # Ok(())
//! # }
//! ```

pub mod inventory;
pub mod notification;
pub mod order;
pub mod payment;
pub mod product;
pub mod shipping;
pub mod user;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use msp_core::http::Problem;

/// An error answered as an `application/problem+json` response.
#[derive(Debug)]
pub struct ApiError(Problem);

impl ApiError {
    /// A problem with this status, machine-readable code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError(Problem::new(status, code, detail.into()))
    }

    /// A 500 whose detail reveals nothing; the cause is logged.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// A 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (parts, body) = self.0.into_response::<Body>().into_parts();
        Response::from_parts(parts, Body::new(body))
    }
}

/// The `Idempotency-Key` of a request, required (400 without one).
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(msp_core::http::header::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_required",
                "this call needs an Idempotency-Key header",
            )
        })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
