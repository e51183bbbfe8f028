//! Hedged requests: send a second copy of a slow request, keep the first
//! success.
//!
//! A request still unanswered after the hedge delay is sent again; the
//! first *successful* answer wins and the other copy is dropped
//! (cancelled). The delay is fixed ([`HedgeLayer::idempotent_http`],
//! [`HedgeLayer::new`]) or a percentile of recent latencies
//! ([`HedgeLayer::percentile`]), kept in a small rolling histogram shared by
//! every clone. Only requests that can safely run twice are hedged: for
//! HTTP, idempotent methods whose body has a known size up to 64 KiB (the
//! same [`HttpPolicy`](crate::retry::HttpPolicy) as retries); for other
//! services, any `Clone` request. A [`RetryBudget`](crate::retry::RetryBudget)
//! caps hedges — by default at 10 % of the requests of the last 10 s — so
//! a slow backend does not get twice the load.
//!
//! A first copy that fails before the delay is returned as is: hedging
//! cuts tail latency, it does not retry (stack a
//! [`RetryLayer`](crate::retry::RetryLayer) for that).
//!
//! # Example
//!
//! ```
//! use msp_resilience::hedge::HedgeLayer;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! // The first copy is stuck for a second; the second answers at once.
//! let backend = service_fn(move |key: &'static str| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n == 0 {
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!         Ok::<_, BoxError>(format!("{key} from copy {n}"))
//!     }
//! });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(
//!         HedgeLayer::new(Duration::from_millis(50), |_: &&str, r: Result<&String, &BoxError>| r.is_err())
//!             .no_budget(),
//!     )
//!     .service(backend);
//!
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.oneshot("user-1").await?, "user-1 from copy 1");
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! # Ok(())
//! # }
//! ```

mod config;
pub mod error;
pub mod future;
mod latency;
mod layer;
mod service;

pub use self::config::{HedgeConfig, HedgeConfigBuilder, HedgeConfigError, HedgeDelay};
pub use self::layer::HedgeLayer;
pub use self::service::Hedge;
