//! Errors of the [`DiscoveryClient`](super::DiscoveryClient).

use http::StatusCode;
use msp_core::classify::{ErrorKind, error_kind};
use msp_core::{InstanceId, ServiceName};
use std::error::Error as _;
use std::net::SocketAddr;

/// Why a [`DiscoveryClient`](super::DiscoveryClient) call failed.
///
/// [`status_code`](Self::status_code) gives the status a gateway or handler
/// answers with; retry policies use [`is_connect`](Self::is_connect) (the
/// request never left, so it is safe to retry whatever the method).
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
    /// Connecting to or talking to the picked instance failed.
    #[error("request to {service} instance {instance} at {addr} failed: {source}")]
    Transport {
        /// The service.
        service: ServiceName,
        /// The instance picked.
        instance: InstanceId,
        /// Its address.
        addr: SocketAddr,
        /// The client's error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl DiscoveryError {
    /// `true` for [`NoInstances`](Self::NoInstances).
    pub fn is_no_instances(&self) -> bool {
        matches!(self, DiscoveryError::NoInstances { .. })
    }

    /// `true` when the connection to the instance could not be made: the
    /// request was not sent, so retrying it (on another instance) is safe
    /// for any method.
    pub fn is_connect(&self) -> bool {
        matches!(self, DiscoveryError::Transport { source, .. } if source.is_connect())
    }

    /// The status an HTTP front end answers with: `503` for no instances
    /// or an unknown service, `504` for a transport timeout, `502` for any
    /// other transport error, `500` for an invalid request.
    pub fn status_code(&self) -> StatusCode {
        match self {
            DiscoveryError::UnknownService { .. } | DiscoveryError::NoInstances { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DiscoveryError::InvalidRequest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            DiscoveryError::Transport { source, .. } => {
                let timed_out = source
                    .source()
                    .is_some_and(|e| error_kind(e) == ErrorKind::Timeout);
                if timed_out {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                }
            }
        }
    }
}
