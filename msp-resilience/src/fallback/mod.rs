//! Fallback: answer from somewhere else when the call fails.
//!
//! [`FallbackLayer`] catches what the inner service could not do and
//! answers with
//!
//! - a value: [`FallbackLayer::value`] takes `Fn(Failed<Res>) -> Res`
//!   (a cached answer, a default, a degraded response), or
//! - another service: [`FallbackLayer::service`] sends a clone of the
//!   request to it (a secondary region, a read replica).
//!
//! When it runs is a [`When`]: on every error (the default), only on
//! rejections by resilience layers ([`on_rejection`](FallbackLayer::on_rejection):
//! an open circuit, a rate limit, a full bulkhead), when a predicate on the error says so
//! ([`when`](FallbackLayer::when)), or when a
//! [`Classify`](msp_core::Classify) calls the result — responses included —
//! a failure ([`on_failure`](FallbackLayer::on_failure)). Every fallback
//! counts `msp_resilience_fallbacks_total`.
//!
//! # Example
//!
//! ```
//! use msp_resilience::fallback::{Failed, FallbackLayer};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let prices = service_fn(|_sku: &'static str| async { Err::<u32, BoxError>("price service down".into()) });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::value(|failed: Failed<u32>| {
//!         // Serve the last known price.
//!         match failed {
//!             Failed::Error(_) | Failed::Response(_) => 999,
//!         }
//!     }))
//!     .service(prices);
//!
//! assert_eq!(svc.oneshot("sku-1").await?, 999);
//! # Ok(())
//! # }
//! ```

pub mod future;
mod layer;
mod service;
mod trigger;

pub use self::layer::FallbackLayer;
pub use self::service::{Failed, Fallback, FromService, FromValue};
pub use self::trigger::{OnError, OnFailure, OnPredicate, OnRejection, When, is_rejection};
