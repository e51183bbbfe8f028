//! Why a proxied exchange failed, and the status the client gets for it.

use std::error::Error as _;
use std::time::Duration;

use http::StatusCode;
use msp_core::BoxError;
use msp_core::http::{Problem, ToProblem};

/// Why [`forward`](super::forward), the [`ProxyClient`](super::ProxyClient)
/// or [`validate_request`](super::validate_request) failed.
///
/// Every variant maps to one status through
/// [`status_code`](Self::status_code) and to an RFC 9457 problem through
/// [`ToProblem`]; the details never echo request bytes back.
///
/// | variant | status | `code` |
/// |---|---|---|
/// | [`Connect`](Self::Connect) | 503 | `upstream_unavailable` |
/// | [`Timeout`](Self::Timeout) | 504 | `upstream_timeout` |
/// | [`Upstream`](Self::Upstream) | 502 | `bad_gateway` |
/// | [`BodyTooLarge`](Self::BodyTooLarge) | 413 | `body_too_large` |
/// | [`BadRequest`](Self::BadRequest), [`ClientBody`](Self::ClientBody) | 400 | `bad_request` |
/// | [`UriTooLong`](Self::UriTooLong) | 414 | `uri_too_long` |
/// | [`HeadersTooLarge`](Self::HeadersTooLarge) | 431 | `headers_too_large` |
/// | [`InvalidUpstream`](Self::InvalidUpstream) | 500 | `invalid_upstream` |
///
/// # Example
///
/// ```
/// use msp_core::http::ToProblem;
/// use msp_gateway::proxy::ProxyError;
///
/// let err = ProxyError::BodyTooLarge { limit: 1024 };
/// assert_eq!(err.status_code(), http::StatusCode::PAYLOAD_TOO_LARGE);
/// assert_eq!(err.to_problem().code(), "body_too_large");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No connection to the upstream could be made (refused, unreachable,
    /// connect timeout): the request never left, so retrying it elsewhere is
    /// safe for any method. `503 Service Unavailable`.
    #[error("cannot connect to the upstream: {source}")]
    Connect {
        /// The connector's error.
        #[source]
        source: BoxError,
    },
    /// The upstream did not answer within the client's response timeout.
    /// `504 Gateway Timeout`.
    #[error("the upstream did not answer within {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The upstream reset the connection or sent something that is not an
    /// HTTP response. `502 Bad Gateway`.
    #[error("bad response from the upstream: {source}")]
    Upstream {
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The request body is larger than the limit (told by `Content-Length`
    /// before reading, or found while streaming). `413 Content Too Large`.
    #[error("request body over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request is malformed (no `Host`, two `Host`s, a dot-segment path…).
    /// `400 Bad Request`.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong, in words that do not repeat the request's bytes.
        reason: &'static str,
    },
    /// Reading the client's request body failed (bad chunked framing, the
    /// client went away). `400 Bad Request`.
    #[error("cannot read the request body: {source}")]
    ClientBody {
        /// The server's error.
        #[source]
        source: BoxError,
    },
    /// The request target is longer than the limit. `414 URI Too Long`.
    #[error("request target over the limit of {limit} bytes")]
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's header section is larger than the limit.
    /// `431 Request Header Fields Too Large`.
    #[error("request header section over the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The upstream URI handed to [`forward`](super::forward) is not an
    /// absolute `http://` URI (a gateway bug, not the client's).
    /// `500 Internal Server Error`.
    #[error("invalid upstream URI: {reason}")]
    InvalidUpstream {
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ProxyError {
    /// The status a client gets for this error (see the table above).
    pub fn status_code(&self) -> StatusCode {
        match self {
            ProxyError::Connect { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest { .. } | ProxyError::ClientBody { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ProxyError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::InvalidUpstream { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `true` when the request never reached the upstream (no connection
    /// could be made): retrying it on another instance is safe whatever
    /// the method.
    pub fn is_connect(&self) -> bool {
        matches!(self, ProxyError::Connect { .. })
    }

    /// `true` when the upstream did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProxyError::Timeout { .. })
    }

    /// `true` for errors caused by the client's request (4xx), which say
    /// nothing about the upstream's health.
    pub fn is_client_error(&self) -> bool {
        self.status_code().is_client_error()
    }

    /// Sorts an error of the pooled client: one of our own errors carried
    /// through it (the request body's limit, the client's body failing)
    /// comes back as itself; a connect failure becomes
    /// [`Connect`](Self::Connect); anything else [`Upstream`](Self::Upstream).
    pub(crate) fn from_client(err: hyper_util::client::legacy::Error) -> Self {
        if let Some(own) = find_own(&err) {
            return own;
        }
        if err.is_connect() {
            ProxyError::Connect {
                source: Box::new(err),
            }
        } else {
            ProxyError::Upstream {
                source: Box::new(err),
            }
        }
    }

    /// A copy of this error for when the original is consumed elsewhere:
    /// the same variant and fields, with a source-less error in place of a
    /// source.
    fn copy_of(&self) -> Self {
        let source = || -> BoxError {
            self.source()
                .map_or_else(|| "".into(), |s| s.to_string().into())
        };
        match self {
            ProxyError::Connect { .. } => ProxyError::Connect { source: source() },
            ProxyError::Timeout { after } => ProxyError::Timeout { after: *after },
            ProxyError::Upstream { .. } => ProxyError::Upstream { source: source() },
            ProxyError::BodyTooLarge { limit } => ProxyError::BodyTooLarge { limit: *limit },
            ProxyError::BadRequest { reason } => ProxyError::BadRequest { reason },
            ProxyError::ClientBody { .. } => ProxyError::ClientBody { source: source() },
            ProxyError::UriTooLong { limit } => ProxyError::UriTooLong { limit: *limit },
            ProxyError::HeadersTooLarge { limit } => ProxyError::HeadersTooLarge { limit: *limit },
            ProxyError::InvalidUpstream { reason } => ProxyError::InvalidUpstream { reason },
        }
    }
}

/// Walks `err`'s source chain for a [`ProxyError`] we put there (our request
/// body's error, which hyper wraps as the cause of a failed request).
fn find_own(err: &(dyn std::error::Error + 'static)) -> Option<ProxyError> {
    let mut cur = err.source();
    while let Some(e) = cur {
        if let Some(own) = e.downcast_ref::<ProxyError>() {
            return Some(own.copy_of());
        }
        cur = e.source();
    }
    None
}

impl ToProblem for ProxyError {
    fn to_problem(&self) -> Problem {
        let (code, detail): (&'static str, std::borrow::Cow<'static, str>) = match self {
            ProxyError::Connect { .. } => (
                "upstream_unavailable",
                "cannot connect to the upstream".into(),
            ),
            ProxyError::Timeout { .. } => (
                "upstream_timeout",
                "the upstream did not answer in time".into(),
            ),
            ProxyError::Upstream { .. } => (
                "bad_gateway",
                "the upstream sent a bad response or reset the connection".into(),
            ),
            ProxyError::BodyTooLarge { limit } => (
                "body_too_large",
                format!("the request body is over the limit of {limit} bytes").into(),
            ),
            ProxyError::BadRequest { reason } => ("bad_request", (*reason).into()),
            ProxyError::ClientBody { .. } => {
                ("bad_request", "the request body could not be read".into())
            }
            ProxyError::UriTooLong { limit } => (
                "uri_too_long",
                format!("the request target is over the limit of {limit} bytes").into(),
            ),
            ProxyError::HeadersTooLarge { limit } => (
                "headers_too_large",
                format!("the request headers are over the limit of {limit} bytes").into(),
            ),
            ProxyError::InvalidUpstream { .. } => (
                "invalid_upstream",
                "the gateway could not build the upstream request".into(),
            ),
        };
        Problem::new(self.status_code(), code, detail)
    }
}
