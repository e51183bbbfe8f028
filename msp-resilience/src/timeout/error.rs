//! Error types of the [`Timeout`](super::Timeout) middleware.
//!
//! [`Elapsed`] is msp-core's timeout marker, [`msp_core::Elapsed`], so
//! every msp crate and [`msp_core::classify::error_kind`] recognise it by
//! type; [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) answers it with
//! `504 Gateway Timeout`. It is returned (boxed, downcastable) by
//! [`Timeout`](super::Timeout) and by the per-try timeout of
//! [`Retry`](crate::retry::Retry).
//!
//! ```
//! use msp_core::classify::{error_kind, ErrorKind};
//! use msp_resilience::timeout::error::Elapsed;
//!
//! let err: msp_core::BoxError = Elapsed::new().into();
//! assert!(err.is::<msp_core::Elapsed>());
//! assert_eq!(error_kind(&*err), ErrorKind::Timeout);
//! assert_eq!(err.to_string(), "request timed out");
//! ```

pub use msp_core::Elapsed;
