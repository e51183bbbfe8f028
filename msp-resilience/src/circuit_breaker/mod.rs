//! Circuit breaker: stop calling a failing dependency, probe it, resume.
//!
//! A [`Breaker`] is closed while calls succeed. It opens when, over a
//! [sliding window](SlidingWindow) of the last N calls (or seconds) holding
//! at least `minimum_calls`, the failure rate or the slow-call rate reaches
//! its threshold, or after `consecutive_failures` failures in a row. While
//! open it rejects calls with [`CircuitOpen`](error::CircuitOpen); after the
//! open duration (which grows with each trip until the breaker closes again)
//! it goes half-open and admits at most `half_open_permits` probe calls —
//! never more, however many callers race for them. The probes' failure and
//! slow-call rates decide between closed and open; a breaker left half-open
//! longer than `max_wait_in_half_open` opens again.
//!
//! [`Mode`]s force the breaker open or closed, disable it, or run it as an
//! observer that records and reports but never rejects. State changes are
//! sent on a broadcast channel ([`Breaker::subscribe`]) and as metrics:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `msp_circuit_breaker_state` | gauge (0 closed, 1 open, 2 half-open) | `breaker` |
//! | `msp_circuit_breaker_calls_total` | counter | `breaker`, `outcome` (`success`, `failure`, `ignored`) |
//! | `msp_circuit_breaker_rejected_total` | counter | `breaker` |
//!
//! Metric handles are registered when the breaker is built: install the
//! metrics recorder first.
//!
//! One state is shared by every clone of the layer and of the service (an
//! `Arc`). In the closed state admission is a single atomic load and
//! recording a success is one uncontended atomic add on a per-thread stripe;
//! no lock is taken and nothing is allocated per call. Each clone of the
//! tower service holds its own small handle on the shared state (allocated
//! when the service is cloned), and a call's `'static` future counts a
//! reference to that handle, so threads calling through their own clones
//! never contend on one reference count. A mutex is taken on state
//! transitions only.
//!
//! # Example
//!
//! ```
//! use msp_core::classify::HttpClassifier;
//! use msp_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, error::CircuitOpen};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let config = CircuitBreakerConfig::builder()
//!     .name("inventory")
//!     .count_window(20)
//!     .minimum_calls(4)
//!     .failure_rate(50.0)
//!     .open_duration(Duration::from_secs(10))
//!     .build()?;
//! let layer = CircuitBreakerLayer::new(config);
//! let mut events = layer.breaker().subscribe();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err("boom") } else { Ok("ok") }
//!     }));
//!
//! for fail in [false, true, true, false] {
//!     let _ = svc.clone().oneshot(fail).await;
//! }
//! // 2 failures out of 4 calls = 50 %: open.
//! let err = svc.clone().oneshot(false).await.unwrap_err();
//! assert!(err.downcast_ref::<CircuitOpen>().is_some());
//! assert_eq!(events.recv().await?.to, msp_resilience::circuit_breaker::State::Open);
//!
//! // For HTTP clients: errors and 5xx responses are failures.
//! let _http = CircuitBreakerLayer::new(CircuitBreakerConfig::default())
//!     .classify(HttpClassifier::new());
//! # Ok(())
//! # }
//! ```

mod breaker;
mod config;
pub mod error;
pub mod future;
mod layer;
mod permit;
mod service;
mod state;
mod window;
mod word;

pub use self::breaker::{Breaker, Reason, Snapshot, State, StateChange};
pub use self::config::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, CircuitBreakerConfigError, Mode,
    SlidingWindow,
};
pub use self::layer::CircuitBreakerLayer;
pub use self::permit::{OwnedPermit, Permit};
pub use self::service::CircuitBreaker;
