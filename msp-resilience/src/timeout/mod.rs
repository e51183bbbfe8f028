//! Deadlines: fail a call that takes too long with [`Elapsed`].
//!
//! [`TimeoutLayer`] gives every call a deadline. Where it sits decides what
//! it bounds: outside a [`RetryLayer`](crate::retry::RetryLayer) it is the
//! **overall** deadline of the call including retries and backoff; inside
//! it (or as [`RetryLayer::per_try_timeout`](crate::retry::RetryLayer::per_try_timeout))
//! it bounds **each attempt**.
//!
//! The deadline of one call is the earliest of:
//!
//! - the layer's timeout, or the [`TimeoutOverride`] request extension if
//!   present (a per-request replacement, longer or shorter);
//! - a [`Deadline`] request extension (an absolute deadline set by the
//!   caller or by an outer layer);
//! - for HTTP requests, an incoming `x-msp-deadline-ms` header (remaining
//!   budget in milliseconds, as written by the calling msp service) or a gRPC
//!   `grpc-timeout` header — these can only shorten the deadline.
//!
//! With propagation on (the default) the layer records the effective
//! deadline in the request: a [`Deadline`] extension, which inner layers
//! and handlers read, and the `x-msp-deadline-ms` header (plus
//! `grpc-timeout` for `application/grpc` requests) for the next service
//! downstream. On the server side the same layer reads the header, so a
//! service never works longer than its caller will wait.
//!
//! Non-HTTP request types opt in with an empty
//! `impl DeadlineRequest for MyRequest {}`.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use msp_resilience::timeout::{Elapsed, TimeoutLayer, TimeoutOverride};
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(100)))
//!     .service(service_fn(|req: Request<()>| async move {
//!         // The downstream sees the remaining budget.
//!         let budget = req.headers()["x-msp-deadline-ms"].to_str()?.to_owned();
//!         tokio::time::sleep(Duration::from_millis(50)).await;
//!         Ok::<_, BoxError>(Response::new(budget))
//!     }));
//!
//! let res = svc.clone().oneshot(Request::new(())).await?;
//! assert_eq!(res.body(), "100");
//!
//! // A per-request override: 10 ms is too short for this call.
//! let mut req = Request::new(());
//! req.extensions_mut().insert(TimeoutOverride(Duration::from_millis(10)));
//! let err = svc.oneshot(req).await.unwrap_err();
//! assert!(err.is::<Elapsed>());
//! # Ok(())
//! # }
//! ```

mod config;
mod deadline;
pub mod error;
pub mod future;
mod layer;
mod service;

pub use self::config::{TimeoutConfig, TimeoutConfigBuilder, TimeoutConfigError};
pub use self::deadline::{
    DEADLINE_HEADER, Deadline, DeadlineRequest, GRPC_TIMEOUT_HEADER, TimeoutOverride,
    format_grpc_timeout, parse_deadline_ms, parse_grpc_timeout,
};
pub use self::error::Elapsed;
pub use self::layer::TimeoutLayer;
pub use self::service::Timeout;
