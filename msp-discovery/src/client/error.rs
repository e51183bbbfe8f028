//! Errors of the [`DiscoveryClient`](super::DiscoveryClient).
//!
//! # Example
//!
//! Behind msp-core's [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) a
//! [`DiscoveryError`] becomes an `application/problem+json` answer without
//! any mapping code (the client registers the type when it is built):
//!
//! ```
//! use http::StatusCode;
//! use msp_core::ServiceName;
//! use msp_core::http::{ToProblem, problem_for};
//! use msp_discovery::DiscoveryError;
//!
//! let err = DiscoveryError::NoInstances { service: ServiceName::new("orders")? };
//! let problem = err.to_problem();
//! assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(problem.code(), "no_instances");
//! assert_eq!(err.status_code(), problem.status());
//!
//! // Found behind a wrapper too, once registered.
//! msp_core::http::register::<DiscoveryError>();
//! let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
//! assert_eq!(problem_for(&*boxed).code(), "no_instances");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use http::StatusCode;
use msp_core::classify::{ErrorKind, error_kind};
use msp_core::http::{Problem, ToProblem};
use msp_core::{BoxError, InstanceId, ServiceName};
use std::fmt;
use std::net::SocketAddr;

/// Why a [`DiscoveryClient`](super::DiscoveryClient) call (or the reading
/// of a [`ResponseBody`](super::ResponseBody)) failed.
///
/// [`status_code`](Self::status_code) gives the status a gateway or handler
/// answers with, and the [`ToProblem`] implementation the whole RFC 9457
/// answer (see the table there); retry policies use
/// [`is_connect`](Self::is_connect) (the request never left, so it is safe
/// to retry whatever the method).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The request's authority is not a service name this client resolves
    /// (missing, not a valid [`ServiceName`], or outside the allowed set).
    #[error("unknown service {authority:?}")]
    UnknownService {
        /// The authority of the request, as given.
        authority: String,
    },
    /// The service has no instance to send to: none registered, or the
    /// registry gave no answer yet within the resolve timeout. Maps to
    /// `503 Service Unavailable`.
    #[error("no instances of service {service}")]
    NoInstances {
        /// The service.
        service: ServiceName,
    },
    /// The request URI could not be rewritten to the instance address
    /// (for example an `https` URI: this client speaks plain HTTP).
    #[error("cannot send {uri} through discovery: {reason}")]
    InvalidRequest {
        /// The request URI.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The mutual TLS connection to the service cannot be set up (feature
    /// `tls`): the server identity its instances must prove cannot be
    /// determined (untrusted or malformed `spiffe_id` metadata, a service
    /// name that is no SPIFFE path segment), or the TLS configuration
    /// cannot be built. Nothing was sent. Maps to `500`: it is this
    /// client's configuration, not the instance, that is wrong.
    #[error("mTLS to service {service} cannot be set up: {reason}")]
    TlsConfig {
        /// The service.
        service: ServiceName,
        /// What is wrong.
        reason: String,
    },
    /// Connecting to or talking to the picked instance failed; `kind` says
    /// at which step.
    #[error("request to {service} instance {instance} at {addr} failed ({kind}): {source}")]
    Transport {
        /// The service.
        service: ServiceName,
        /// The instance picked.
        instance: InstanceId,
        /// Its address.
        addr: SocketAddr,
        /// Which step failed.
        kind: TransportKind,
        /// The underlying error (the HTTP client's or the I/O error), for
        /// logs and `source()` chains; its type is not part of the API.
        #[source]
        source: BoxError,
    },
}

/// Which step of talking to an instance failed, in
/// [`DiscoveryError::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// No connection could be made (refused, unreachable): the request was
    /// not sent.
    Connect,
    /// Connecting took longer than the
    /// [connect timeout](super::DiscoveryClientBuilder::connect_timeout):
    /// the request was not sent.
    ConnectTimeout,
    /// The connection was made, then sending the request or receiving the
    /// response head failed (reset, closed, a malformed response): the
    /// instance may have seen the request.
    Request,
    /// The response head arrived, then reading its body failed.
    Body,
}

impl TransportKind {
    /// A short label: `connect`, `connect_timeout`, `request` or `body`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Connect => "connect",
            TransportKind::ConnectTimeout => "connect_timeout",
            TransportKind::Request => "request",
            TransportKind::Body => "body",
        }
    }

    /// Classifies an error of the pooled hyper-util client.
    pub(crate) fn of_client_error(error: &hyper_util::client::legacy::Error) -> TransportKind {
        match (error.is_connect(), error_kind(error) == ErrorKind::Timeout) {
            (true, true) => TransportKind::ConnectTimeout,
            (true, false) => TransportKind::Connect,
            (false, _) => TransportKind::Request,
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DiscoveryError {
    /// `true` for [`NoInstances`](Self::NoInstances).
    pub fn is_no_instances(&self) -> bool {
        matches!(self, DiscoveryError::NoInstances { .. })
    }

    /// `true` when the connection to the instance could not be made
    /// ([`TransportKind::Connect`] or [`TransportKind::ConnectTimeout`]):
    /// the request was not sent, so retrying it (on another instance) is
    /// safe for any method.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            DiscoveryError::Transport {
                kind: TransportKind::Connect | TransportKind::ConnectTimeout,
                ..
            }
        )
    }

    /// `true` when a deadline passed ([`TransportKind::ConnectTimeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            DiscoveryError::Transport {
                kind: TransportKind::ConnectTimeout,
                ..
            }
        )
    }

    /// The status an HTTP front end answers with; the same as
    /// [`to_problem`](ToProblem::to_problem)`().status()`.
    pub fn status_code(&self) -> StatusCode {
        match self {
            DiscoveryError::UnknownService { .. } | DiscoveryError::NoInstances { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DiscoveryError::InvalidRequest { .. } | DiscoveryError::TlsConfig { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            DiscoveryError::Transport { kind, .. } => match kind {
                TransportKind::Connect => StatusCode::SERVICE_UNAVAILABLE,
                TransportKind::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
                TransportKind::Request | TransportKind::Body => StatusCode::BAD_GATEWAY,
            },
        }
    }
}

/// The HTTP answer for each failure.
///
/// | error | status | `code` |
/// |---|---|---|
/// | `NoInstances` | 503 | `no_instances` |
/// | `UnknownService` | 503 | `unknown_service` |
/// | `Transport`, [`Connect`](TransportKind::Connect) | 503 | `upstream_unavailable` |
/// | `Transport`, [`ConnectTimeout`](TransportKind::ConnectTimeout) | 504 | `upstream_timeout` |
/// | `Transport`, [`Request`](TransportKind::Request) or [`Body`](TransportKind::Body) | 502 | `bad_gateway` |
/// | `InvalidRequest` | 500 | `invalid_upstream_request` |
/// | `TlsConfig` | 500 | `upstream_tls_config` |
///
/// A connect failure is a 503 (as Envoy answers it): the instance was not
/// reached, the request was not sent and may be retried; a failure after
/// the request left is a 502. The detail names the service (which the
/// caller asked for), never an instance address or the underlying error.
impl ToProblem for DiscoveryError {
    fn to_problem(&self) -> Problem {
        let status = self.status_code();
        match self {
            DiscoveryError::NoInstances { service } => Problem::new(
                status,
                "no_instances",
                format!("no instance of service {service} is available"),
            ),
            DiscoveryError::UnknownService { .. } => Problem::new(
                status,
                "unknown_service",
                "the requested service is not known",
            ),
            DiscoveryError::InvalidRequest { .. } => Problem::new(
                status,
                "invalid_upstream_request",
                "the request cannot be sent to the service",
            ),
            DiscoveryError::TlsConfig { service, .. } => Problem::new(
                status,
                "upstream_tls_config",
                format!("no secure connection to service {service} can be set up"),
            ),
            DiscoveryError::Transport { service, kind, .. } => match kind {
                TransportKind::Connect => Problem::new(
                    status,
                    "upstream_unavailable",
                    format!("could not connect to an instance of service {service}"),
                ),
                TransportKind::ConnectTimeout => Problem::new(
                    status,
                    "upstream_timeout",
                    format!("connecting to an instance of service {service} timed out"),
                ),
                TransportKind::Request | TransportKind::Body => Problem::new(
                    status,
                    "bad_gateway",
                    format!("service {service} did not answer properly"),
                ),
            },
        }
    }
}
