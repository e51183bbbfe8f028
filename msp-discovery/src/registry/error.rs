//! The error type of every registry operation.
//!
//! # Example
//!
//! ```
//! use msp_discovery::registry::RegistryError;
//!
//! let err = RegistryError::unavailable("etcd", "connection refused");
//! // Transient errors are retried by registrations and watches; they never
//! // empty a client's instance set.
//! assert!(err.is_transient());
//! assert!(!RegistryError::LeaseLost.is_transient());
//! assert_eq!(err.to_string(), "etcd registry unavailable: connection refused");
//! ```

use msp_core::{BoxError, InstanceId};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The backend could not be reached or answered with a transient error
    /// (connection refused, timeout, leader election, DNS `SERVFAIL`…).
    ///
    /// Registrations retry with backoff and watches reconnect after it.
    #[error("{backend} registry unavailable: {source}")]
    Unavailable {
        /// The backend (`"memory"`, `"etcd"`, `"dns"`…).
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The lease behind a registration no longer exists (it expired, was
    /// revoked, or the registry lost it in a restart).
    ///
    /// A [`Registration`](super::Registration) answers it by registering
    /// again.
    #[error("the registration's lease was lost")]
    LeaseLost,
    /// No instance with this id is registered.
    #[error("instance {0} is not registered")]
    NotFound(InstanceId),
    /// The backend does not support the operation (for example
    /// registering into a [`StaticRegistry`](super::StaticRegistry) or a
    /// `DnsDiscovery`).
    #[error("the {backend} registry does not support {operation}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// The operation that was refused.
        operation: &'static str,
    },
    /// A stored entry could not be decoded, or an instance could not be
    /// encoded.
    #[error("invalid registry entry {key:?}: {source}")]
    InvalidEntry {
        /// The key (or name) of the entry.
        key: String,
        /// Why it was rejected.
        #[source]
        source: BoxError,
    },
    /// The registry was configured with invalid settings.
    #[error("invalid registry configuration: {0}")]
    Config(String),
    /// The operation did not finish in time.
    #[error("{backend} registry operation {operation} timed out")]
    Timeout {
        /// The backend.
        backend: &'static str,
        /// The operation.
        operation: &'static str,
    },
    /// The backend refused the operation for a reason retrying will not fix
    /// (permission denied, invalid argument…).
    #[error("{backend} registry rejected the operation: {source}")]
    Rejected {
        /// The backend.
        backend: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl RegistryError {
    /// A [`RegistryError::Unavailable`] for `backend`.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        RegistryError::Unavailable {
            backend,
            source: source.into(),
        }
    }

    /// Whether retrying the same operation later may succeed: the backend
    /// was unreachable or slow.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unavailable { .. } | RegistryError::Timeout { .. }
        )
    }
}
