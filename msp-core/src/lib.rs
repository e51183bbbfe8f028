//! The shared vocabulary of the msp crates.
//!
//! `msp-core` holds what every other msp crate agrees on, so that
//! `msp-resilience`, `msp-discovery`, `msp-config` and `msp-saga` never need to
//! depend on each other:
//!
//! - [`instance`]: [`ServiceName`], [`InstanceId`] and [`Instance`], validated
//!   on construction and on deserialization.
//! - [`classify`]: the [`Classify`] trait deciding whether a response or error
//!   is a success, a failure or to be ignored, with HTTP and gRPC classifiers.
//!   Circuit breakers, retries, outlier ejection and metrics all use it.
//! - [`backoff`]: exponential backoff with full, equal and decorrelated
//!   jitter, and [`backoff::jitter`] for periodic work.
//! - [`http`]: the HTTP contracts between crates — errors as
//!   RFC 9457 problem+json responses
//!   ([`ToProblem`](crate::http::ToProblem),
//!   [`HttpErrorLayer`](crate::http::HttpErrorLayer)) and the shared header
//!   names.
//! - [`identity`]: SPIFFE workload identities ([`identity::SpiffeId`],
//!   [`identity::TrustDomain`]) and the verified [`identity::PeerIdentity`]
//!   of a request's peer.
//! - `tls` (feature `tls`): mutual TLS with SPIFFE workload identities —
//!   `MtlsListener`, `MtlsConnector`, `WorkloadIdentity` with rotation, the
//!   development CA.
//! - `authz` (feature `authz`, included in `tls`): authorization policies
//!   as a tower layer.
//! - [`time`]: the timeout marker [`Elapsed`], the request [`time::Deadline`]
//!   and [`time::ceil_secs`].
//! - [`observe`]: RED metrics and W3C trace-context layers.
//! - [`health`]: a registry of component checks served on `/health/live` and
//!   `/health/ready`.
//! - [`shutdown`]: a graceful-shutdown coordinator with ordered hooks and a
//!   bounded drain of in-flight requests.
//!
//! # Features
//!
//! - `otel`: `observe::otel`, exporting msp's spans with the OpenTelemetry
//!   SDK over OTLP/HTTP, with the trace and span ids msp propagates in
//!   `traceparent`.
//! - `tls`: service-to-service security — `tls` (SPIFFE workload
//!   identities from X.509 SVIDs, an mTLS listener for `axum::serve` and
//!   hyper in strict or permissive mode, a hyper-util connector that checks
//!   the server's identity, certificate rotation, a development CA) and
//!   `authz` (Istio-style ALLOW/DENY/AUDIT authorization policies over
//!   peer identities, addresses and requests, hot-reloadable through a
//!   `PolicyHandle`).
//! - `authz`: the authorization policies alone, without the TLS stack.
//! - `testing`: internal, for msp's own test suites (hidden, no stability
//!   promise).
//!
//! # Example
//!
//! ```
//! use msp_core::{Instance, ServiceName};
//! use msp_core::backoff::{Backoff, Jitter};
//! use std::time::Duration;
//!
//! let service = ServiceName::new("order-service")?;
//! let instance = Instance::builder(service, "127.0.0.1:8080".parse()?)
//!     .zone("eu-west-1a")
//!     .weight(2)
//!     .build()?;
//! assert_eq!(instance.service().as_str(), "order-service");
//!
//! let backoff = Backoff::builder()
//!     .initial(Duration::from_millis(100))
//!     .max_delay(Duration::from_secs(5))
//!     .max_attempts(4)
//!     .jitter(Jitter::Full)
//!     .build()?;
//! assert_eq!(backoff.iter().count(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "authz")]
pub mod authz;
pub mod backoff;
pub mod classify;
pub mod health;
pub mod http;
pub mod identity;
pub mod instance;
pub mod observe;
pub mod shutdown;
// Internal test support for msp's own suites: hidden, no stability promise.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;

pub use classify::{Classify, Outcome};
pub use instance::{Instance, InstanceId, ServiceName};
pub use time::Elapsed;

/// A type-erased error, the error type most msp middleware returns.
///
/// The same alias as `tower::BoxError`, so errors flow between tower and msp
/// layers without conversion.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
