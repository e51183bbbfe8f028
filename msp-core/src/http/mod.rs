//! The HTTP contracts the msp crates share: errors as RFC 9457 problem
//! responses, and the header names they agree on.
//!
//! - [`Problem`]: an error as the caller sees it — a status, a stable
//!   machine-readable code, a message safe to show and an optional
//!   `Retry-After` — sent as `application/problem+json`.
//! - [`ToProblem`]: implemented by each crate for its own errors
//!   (msp-resilience's rejections, msp-discovery's `DiscoveryError`, the
//!   gateway's errors), and [`register`], which adds a type to the
//!   process-wide set [`problem_for`] consults (a registry because Rust
//!   cannot downcast a `BoxError` to `dyn ToProblem`; see [`register`]).
//! - [`HttpErrorLayer`]: the one layer that turns a service's errors — from
//!   `call` or `poll_ready` — into problem responses, so axum needs no
//!   `HandleErrorLayer`. Its error type is `Infallible`.
//! - [`header`]: `Idempotency-Key`, `x-msp-deadline-ms`, `grpc-timeout`,
//!   `x-request-id`.
//!
//! What an error becomes (the first match, walking the error's `source()`
//! chain, `io::Error` wrappers included):
//!
//! | error | status | `code` | `Retry-After` |
//! |---|---|---|---|
//! | a type mapped on the layer ([`HttpErrorLayer::map`], [`HttpErrorLayer::problem`]) | its choice | | |
//! | a [registered](register) [`ToProblem`] type | its choice (msp-resilience: `CircuitOpen` 503, `RateLimited` 429, `BulkheadFull` 503, `BudgetExhausted` 503; msp-discovery: `NoInstances` 503 …) | | when it knows |
//! | [`Elapsed`](crate::Elapsed), or any timeout ([`error_kind`](crate::classify::error_kind)) | `504 Gateway Timeout` | `timeout` | |
//! | anything else | `500` ([configurable](HttpErrorLayer::unknown_status)) | `internal` | |
//!
//! The detail of an unknown error is **not** sent (it may hold addresses,
//! queries, secrets); the layer logs the error with `tracing` instead.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use msp_core::http::{HttpErrorLayer, Problem, ToProblem, register};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("tenant {0} is suspended")]
//! struct Suspended(String);
//!
//! impl ToProblem for Suspended {
//!     fn to_problem(&self) -> Problem {
//!         Problem::new(StatusCode::FORBIDDEN, "suspended", "this tenant is suspended")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! register::<Suspended>();
//! let failing = tower::service_fn(|_req: Request<axum::body::Body>| async {
//!     Err::<http::Response<axum::body::Body>, _>(Suspended("acme".into()))
//! });
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route_service("/acme", ServiceBuilder::new().layer(HttpErrorLayer::new()).service(failing));
//!
//! let res = app.oneshot(Request::get("/acme").body(axum::body::Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(
//!     body,
//!     r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"this tenant is suspended","code":"suspended"}"#
//! );
//! # Ok(())
//! # }
//! ```

pub mod future;
pub mod header;
mod layer;
mod problem;
mod registry;

pub use self::layer::{HttpError, HttpErrorLayer};
pub use self::problem::{PROBLEM_JSON, Problem, ProblemBody, ToProblem};
pub use self::registry::{is_registered, problem_for, register};
