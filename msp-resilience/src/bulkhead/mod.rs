//! Bulkhead: cap the calls in flight to a dependency, queue a few, reject
//! the rest.
//!
//! A [`Compartment`] admits at most `max_concurrent` calls at once. When
//! all slots are taken, up to `max_queue` calls wait (for at most
//! `max_wait`); any other call fails at once with
//! [`BulkheadFull`](error::BulkheadFull), which never queues unboundedly as
//! tower's `ConcurrencyLimit` does. After [`release_on_body_end`](BulkheadLayer::release_on_body_end) a
//! call keeps its slot until the response **body** ends ([`PermitBody`]),
//! not just the headers. An optional [adaptive](Adaptive) limit (AIMD)
//! grows while calls succeed fast and shrinks on failures or slow calls,
//! for every clone at once.
//!
//! Taking a free slot is one compare-and-swap; there is no lock on the
//! path of a call.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `msp_bulkhead_limit` | gauge | `bulkhead` |
//! | `msp_bulkhead_rejected_total` | counter | `bulkhead` |
//!
//! # Example
//!
//! ```
//! use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer, error::BulkheadFull};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = BulkheadLayer::new(
//!     BulkheadConfig::builder()
//!         .max_concurrent(1)
//!         .max_queue(0)
//!         .build()?,
//! );
//! let compartment = layer.compartment().clone();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("done") }));
//!
//! let busy = compartment.try_acquire()?; // someone else holds the only slot
//! let err = svc.clone().oneshot(()).await.unwrap_err();
//! assert!(err.downcast_ref::<BulkheadFull>().is_some());
//! drop(busy);
//! assert_eq!(svc.oneshot(()).await?, "done");
//! # Ok(())
//! # }
//! ```

mod body;
mod compartment;
mod config;
pub mod error;
pub mod future;
mod layer;
mod service;

pub use self::body::{OnBodyEnd, OnResponse, PermitBody, Release};
pub use self::compartment::{BulkheadPermit, Compartment};
pub use self::config::{Adaptive, BulkheadConfig, BulkheadConfigBuilder, BulkheadConfigError};
pub use self::layer::BulkheadLayer;
pub use self::service::Bulkhead;
