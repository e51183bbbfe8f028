//! The header names msp crates agree on, defined once.
//!
//! ```
//! use msp_core::http::header;
//!
//! let req = http::Request::get("/orders")
//!     .header(header::IDEMPOTENCY_KEY, "order-42:charge")
//!     .header(header::DEADLINE_MS, "250")
//!     .body(())?;
//! assert_eq!(req.headers()["idempotency-key"], "order-42:charge");
//! assert_eq!(req.headers()["x-msp-deadline-ms"], "250");
//! # Ok::<(), http::Error>(())
//! ```

use http::HeaderName;

/// `Idempotency-Key` (IETF draft `httpapi-idempotency-key-header`): a
/// request carrying it may be retried even when its method is not
/// idempotent, and a saga step sends its stable key in it.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// `x-msp-deadline-ms`: the remaining time budget of a request, in whole
/// milliseconds (ASCII digits), for the next service downstream. It can
/// only shorten the receiver's own deadline.
pub const DEADLINE_MS: HeaderName = HeaderName::from_static("x-msp-deadline-ms");

/// `grpc-timeout`: gRPC's deadline header (at most 8 digits and a unit,
/// e.g. `250m`).
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// `x-request-id`: the request id set by msp-core's observe layers (the same
/// name tower-http's request-id layer uses by default).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
