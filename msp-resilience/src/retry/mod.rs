//! Retries with backoff, a shared retry budget, `Retry-After` and body
//! replay.
//!
//! [`RetryLayer`] sends a failed request again, up to
//! [`max_attempts`](RetryLayer::max_attempts) in total, waiting a jittered
//! exponential [`Backoff`](msp_core::backoff::Backoff) between attempts.
//! What may be retried is the [`Policy`]'s call:
//!
//! - [`RetryLayer::idempotent_http`] uses [`HttpPolicy`]: idempotent methods only
//!   (unless configured, or the request has an
//!   [`Idempotency-Key`](msp_core::http::header::IDEMPOTENCY_KEY)), failures
//!   as classified by msp-core's [`HttpClassifier`](msp_core::classify::HttpClassifier)
//!   (errors and `5xx`, plus `429`, minus `501`), `Retry-After` honoured on
//!   `429`/`503`, and request bodies replayed from a buffer of at most
//!   64 KiB ([`ReplayBody`]): a larger body is sent once and not retried.
//! - [`RetryLayer::new`] takes a closure `|req, result| -> bool` for any
//!   service whose requests are `Clone`.
//!
//! Retries are bounded by a [`RetryBudget`] shared by every clone of the
//! service (by default 20 % of the requests of the last 10 s plus 10 per
//! second, like linkerd): when the downstream fails everything, the
//! budget — not `attempts × requests` — bounds the extra load. A refused
//! retry returns the last result (or [`BudgetExhausted`] if asked) and
//! counts `msp_resilience_retry_budget_exhausted_total`.
//!
//! A [per-try timeout](RetryLayer::per_try_timeout) bounds each attempt; a
//! [`Deadline`](crate::timeout::Deadline) request extension (as set by an
//! outer [`TimeoutLayer`](crate::timeout::TimeoutLayer)) bounds them all,
//! and no retry starts that could not begin before it.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use msp_core::backoff::Backoff;
//! use msp_resilience::retry::{ReplayBody, RetryLayer};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = calls.clone();
//! // Fails twice with 503, then answers.
//! let backend = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, BoxError>(Response::builder().status(status).body(())?)
//!     }
//! });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(
//!         RetryLayer::idempotent_http()
//!             .max_attempts(3)
//!             .backoff(Backoff::constant(Duration::from_millis(10))?)
//!             .per_try_timeout(Duration::from_secs(1)),
//!     )
//!     .service(backend);
//!
//! let res = svc.oneshot(Request::new(Full::new(Bytes::from("payload")))).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```

mod body;
mod budget;
mod config;
pub mod error;
pub mod future;
mod layer;
mod policy;
mod retry_after;
mod service;

pub use self::body::ReplayBody;
pub use self::budget::{BudgetConfig, RetryBudget};
pub use self::config::{RetryConfig, RetryConfigBuilder, RetryConfigError};
pub use self::error::BudgetExhausted;
pub use self::layer::RetryLayer;
pub use self::policy::{
    Action, DEFAULT_MAX_REPLAY_BODY, DEFAULT_MAX_RETRY_AFTER, FnPolicy, HttpPolicy, HttpReplay,
    Policy, ShouldRetry, is_idempotent,
};
pub use self::retry_after::retry_after;
pub use self::service::Retry;
