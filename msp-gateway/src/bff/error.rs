//! Why an aggregate could not be built, why a backend call failed, and
//! what the client is told (problem+json through `msp_core::http`).

use super::validate::AggregateProblem;
use crate::proxy::ProxyError;
use http::StatusCode;
use msp_core::BoxError;
use msp_core::classify::{ErrorKind, error_kind};
use msp_core::http::{Problem, ToProblem, problem_for};
use std::fmt;

/// Why [`AggregateBuilder::build`](super::AggregateBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// The settings are invalid; every problem is listed.
    #[error("aggregate {name:?}: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The aggregate's name.
        name: String,
        /// Every problem found.
        problems: Vec<AggregateProblem>,
    },
    /// A backend has no client to call it with.
    #[error(
        "aggregate {aggregate:?}: backend {backend:?} has no client (set a shared one with `client` or its own with `backend_client`)"
    )]
    NoClient {
        /// The aggregate's name.
        aggregate: String,
        /// The backend's name.
        backend: String,
    },
}

/// Why a shaped response could not be encoded for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The response does not fit the profile's protobuf message (a field
    /// of the wrong type): the backends' data broke the contract the
    /// schema states, so `502`, like a backend body that is not JSON.
    #[error("the response does not fit protobuf message {message}: {reason}")]
    Schema { message: String, reason: String },
    /// The serializer failed (not expected for JSON values): `500`.
    #[error("the response could not be encoded: {0}")]
    Serialize(String),
}

impl EncodeError {
    /// The problem sent to the client.
    pub(crate) fn problem(&self, aggregate: &str) -> Problem {
        match self {
            EncodeError::Schema { message, reason } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "response_schema_mismatch",
                format!(
                    "the response of {aggregate:?} does not fit protobuf message {message}: {reason}"
                ),
            ),
            EncodeError::Serialize(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the response could not be encoded",
            ),
        }
    }
}

/// Why one backend call failed: the reason in `_partial` and, for a
/// required backend, the endpoint's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Its timeout or the endpoint deadline passed.
    Timeout,
    /// The call failed (refused, no instance, breaker open…), with the
    /// status a caller should see (502/503/504).
    Unavailable {
        status: StatusCode,
        code: &'static str,
    },
    /// It answered with a non-2xx status.
    Status(StatusCode),
    /// Its body is not JSON or is too large.
    Body(String),
    /// A placeholder had no value.
    Missing(String),
    /// A placeholder's value would change the URL's path structure (`.`
    /// or `..`); `client`: the request supplied it.
    BadValue { what: String, client: bool },
    /// A backend it uses failed.
    Dependency(String),
}

impl Failure {
    /// Classifies a caller error: timeouts → 504, the gateway's proxy
    /// errors and registered msp errors by their own status, anything else
    /// 502 (never 500: the gateway worked, the backend did not).
    pub(crate) fn from_error(e: &BoxError) -> Failure {
        if error_kind(&**e) == ErrorKind::Timeout {
            return Failure::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&**e);
        let mut problem = None;
        while let Some(err) = source {
            if let Some(pe) = err.downcast_ref::<ProxyError>() {
                problem = Some(pe.to_problem());
                break;
            }
            source = err.source();
        }
        let problem = problem.unwrap_or_else(|| problem_for(&**e));
        let status = problem.status();
        if status == StatusCode::GATEWAY_TIMEOUT {
            return Failure::Timeout;
        }
        let (status, code) = match status {
            StatusCode::SERVICE_UNAVAILABLE => (status, "backend_unavailable"),
            _ => (StatusCode::BAD_GATEWAY, "backend_failed"),
        };
        Failure::Unavailable { status, code }
    }

    /// A short reason for `_partial` and metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unavailable { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                "unavailable"
            }
            Failure::Unavailable { .. } => "error",
            Failure::Status(_) => "status",
            Failure::Body(_) => "bad_body",
            Failure::Missing(_) => "missing_value",
            Failure::BadValue { .. } => "bad_value",
            Failure::Dependency(_) => "dependency_failed",
        }
    }

    /// The problem sent when a required backend fails this way.
    pub(crate) fn problem(&self, aggregate: &str, backend: &str) -> Problem {
        let (status, code, detail) = match self {
            Failure::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "backend_timeout",
                format!("backend {backend:?} of {aggregate:?} did not answer in time"),
            ),
            Failure::Unavailable { status, code } => (
                *status,
                *code,
                format!("backend {backend:?} of {aggregate:?} could not be called"),
            ),
            // A client error of the backend is the client's (a missing
            // order is a 404); a server error is a bad gateway.
            Failure::Status(s) if s.is_client_error() => (
                *s,
                "backend_status",
                format!(
                    "backend {backend:?} of {aggregate:?} answered {}",
                    s.as_u16()
                ),
            ),
            Failure::Status(s) => (
                StatusCode::BAD_GATEWAY,
                "backend_status",
                format!(
                    "backend {backend:?} of {aggregate:?} answered {}",
                    s.as_u16()
                ),
            ),
            Failure::Body(why) => (
                StatusCode::BAD_GATEWAY,
                "backend_bad_body",
                format!("backend {backend:?} of {aggregate:?}: {why}"),
            ),
            Failure::Missing(what) => (
                StatusCode::BAD_GATEWAY,
                "backend_missing_value",
                format!("backend {backend:?} of {aggregate:?}: no value for {what}"),
            ),
            // The request's own value: the client's error, and no
            // backend was called.
            Failure::BadValue { what, client: true } => (
                StatusCode::BAD_REQUEST,
                "bad_value",
                format!(
                    "backend {backend:?} of {aggregate:?}: the value of {what} cannot be a path segment (`.` or `..`)"
                ),
            ),
            Failure::BadValue {
                what,
                client: false,
            } => (
                StatusCode::BAD_GATEWAY,
                "backend_bad_value",
                format!(
                    "backend {backend:?} of {aggregate:?}: the value of {what} cannot be a path segment (`.` or `..`)"
                ),
            ),
            Failure::Dependency(dep) => (
                StatusCode::BAD_GATEWAY,
                "backend_dependency_failed",
                format!("backend {backend:?} of {aggregate:?} needs {dep:?}, which failed"),
            ),
        };
        Problem::new(status, code, detail)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Unavailable { status, .. } => write!(f, "call failed ({})", status.as_u16()),
            Failure::Status(s) => write!(f, "answered {}", s.as_u16()),
            Failure::Body(why) => f.write_str(why),
            Failure::Missing(what) => write!(f, "no value for {what}"),
            Failure::BadValue { what, .. } => write!(f, "{what} is `.` or `..`"),
            Failure::Dependency(dep) => write!(f, "needs {dep:?}, which failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_become_500() {
        let other: BoxError = "boom".into();
        let f = Failure::from_error(&other);
        assert_eq!(f.problem("a", "b").status(), StatusCode::BAD_GATEWAY);
        let timeout: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(Failure::from_error(&timeout), Failure::Timeout);
        assert_eq!(
            Failure::Status(StatusCode::NOT_FOUND)
                .problem("a", "b")
                .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Failure::Status(StatusCode::INTERNAL_SERVER_ERROR)
                .problem("a", "b")
                .status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
