//! Why a policy set was rejected ([`PolicyError`]) and what a denied
//! request is answered with ([`PermissionDenied`]).

use crate::http::{PROBLEM_JSON, Problem, ProblemBody, ToProblem, register};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{Either, Full};
use std::fmt;
use std::sync::{Once, OnceLock};

/// Why an authorization policy set was rejected. Every variant names the
/// policy and the rule (its `name`, else its position from 0) so the
/// operator can find the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy had an empty name.
    #[error("authorization policy #{index} has an empty name")]
    EmptyPolicyName {
        /// The policy's position in the set, from 0.
        index: usize,
    },
    /// Two policies had the same name (names label metrics and logs).
    #[error("authorization policy name {0:?} is used twice")]
    DuplicatePolicy(String),
    /// A policy had no rules: it could never match, which is never what
    /// was meant (an ALLOW policy without rules would deny everything).
    #[error("authorization policy {0:?} has no rules")]
    NoRules(String),
    /// A rule, a `from` source, a `to` operation or a `when` condition
    /// constrained nothing; it would match every request.
    #[error(
        "authorization policy {policy:?}, rule {rule:?}: {what} is empty and would match every request"
    )]
    EmptyRule {
        /// The policy.
        policy: String,
        /// The rule's name or position.
        rule: String,
        /// What was empty (`"the rule"`, `"from[0]"`, `"to[1]"`, `"when[0]"`).
        what: String,
    },
    /// A value in a rule could not be parsed.
    #[error("authorization policy {policy:?}, rule {rule:?}: {field} value {value:?}: {reason}")]
    BadValue {
        /// The policy.
        policy: String,
        /// The rule's name or position.
        rule: String,
        /// The field (`principals`, `ip_blocks`, `paths`, `when.header` …).
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A request the policies denied: answered `403 Forbidden` with a
/// problem+json body (code `permission_denied`), or for gRPC requests
/// `200 OK` with `grpc-status: 7` (PERMISSION_DENIED) and no body.
///
/// The answer never names the policy (that would tell a caller what to
/// change); the layer logs it with `tracing` instead.
///
/// ```
/// use msp_core::authz::PermissionDenied;
/// use msp_core::http::ToProblem;
///
/// let denied = PermissionDenied::new();
/// assert_eq!(denied.to_problem().status(), 403);
/// assert_eq!(denied.to_problem().code(), "permission_denied");
///
/// assert!(msp_core::http::is_registered::<PermissionDenied>());
///
/// let res = denied.problem_response::<()>();
/// assert_eq!(res.status(), 403);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
///
/// let grpc = denied.grpc_response::<()>();
/// assert_eq!(grpc.status(), 200);
/// assert_eq!(grpc.headers()["grpc-status"], "7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access denied by authorization policy")]
#[non_exhaustive]
pub struct PermissionDenied;

/// A request refused before any policy is evaluated, because what it
/// addresses is ambiguous: the policies could decide on one path or host
/// while the inner service routes another. Answered `400 Bad Request` with
/// a problem+json body, code `bad_path` or `bad_host`.
///
/// ```
/// use msp_core::authz::MalformedRequest;
/// use msp_core::http::ToProblem;
///
/// let err = MalformedRequest::DotSegment;
/// assert_eq!(err.to_problem().status(), 400);
/// assert_eq!(err.to_problem().code(), "bad_path");
/// assert_eq!(MalformedRequest::ConflictingHost.to_problem().code(), "bad_host");
/// let res = err.problem_response::<()>();
/// assert_eq!(res.status(), 400);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedRequest {
    /// The path has a `.` or `..` segment, raw or percent-encoded
    /// (`%2e%2e`, any case).
    #[error("the request path has a '.' or '..' segment")]
    DotSegment,
    /// The path has an empty segment (`//`) before its end.
    #[error("the request path has an empty segment")]
    EmptySegment,
    /// The path has a percent-encoded `/` or `\` (`%2f`, `%5c`).
    #[error("the request path has an encoded '/' or '\\'")]
    EncodedSeparator,
    /// The URI authority and the `Host` header name different hosts (or
    /// ports).
    #[error("the request URI and the Host header name different hosts")]
    ConflictingHost,
    /// The `Host` header is repeated or not text.
    #[error("the request has an unreadable or repeated Host header")]
    InvalidHost,
}

impl MalformedRequest {
    /// The `400` problem+json answer. The first call
    /// [registers](crate::http::register) the type.
    pub fn problem_response<B>(&self) -> Response<ProblemBody<B>> {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(register::<MalformedRequest>);
        let mut res = Response::new(Either::Right(Full::new(self.to_problem().to_bytes())));
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

impl ToProblem for MalformedRequest {
    fn to_problem(&self) -> Problem {
        let code = match self {
            MalformedRequest::ConflictingHost | MalformedRequest::InvalidHost => "bad_host",
            _ => "bad_path",
        };
        Problem::new(StatusCode::BAD_REQUEST, code, self.to_string())
    }
}

/// `grpc-status` of PERMISSION_DENIED.
const GRPC_PERMISSION_DENIED: &str = "7";
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

impl PermissionDenied {
    /// The denial. The first call [registers](crate::http::register) the
    /// type, so code that returns it as an error (a gateway stage calling
    /// [`AuthorizationPolicies::decide`](super::AuthorizationPolicies::decide)
    /// itself) gets the same `403` from
    /// [`HttpErrorLayer`](crate::http::HttpErrorLayer).
    pub fn new() -> Self {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(register::<PermissionDenied>);
        PermissionDenied
    }

    /// The gRPC answer: `200 OK`, `content-type: application/grpc`,
    /// `grpc-status: 7` and a `grpc-message`, with an empty body (a
    /// trailers-only response, as gRPC servers send for errors raised
    /// before any message).
    pub fn grpc_response<B>(&self) -> Response<ProblemBody<B>> {
        let mut res = Response::new(Either::Right(Full::new(Bytes::new())));
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from_static(GRPC_PERMISSION_DENIED),
        );
        // Percent-encoded per the gRPC spec (spaces as %20).
        headers.insert(
            GRPC_MESSAGE,
            HeaderValue::from_static("access%20denied%20by%20authorization%20policy"),
        );
        res
    }

    /// The answer for a request with these headers: [`grpc_response`]
    /// when its `content-type` is `application/grpc` (or
    /// `application/grpc+proto`, `application/grpc-web` …), else the
    /// problem+json `403`.
    ///
    /// [`grpc_response`]: PermissionDenied::grpc_response
    pub fn response_for<B>(&self, request_headers: &HeaderMap) -> Response<ProblemBody<B>> {
        if is_grpc(request_headers) {
            self.grpc_response()
        } else {
            self.problem_response()
        }
    }

    /// The `403` problem+json answer. The document never changes, so it is
    /// serialized once: a flood of denied requests costs no JSON encoding.
    pub fn problem_response<B>(&self) -> Response<ProblemBody<B>> {
        static BODY: OnceLock<Bytes> = OnceLock::new();
        let body = BODY.get_or_init(|| self.to_problem().to_bytes()).clone();
        let mut res = Response::new(Either::Right(Full::new(body)));
        *res.status_mut() = StatusCode::FORBIDDEN;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

impl Default for PermissionDenied {
    fn default() -> Self {
        Self::new()
    }
}

impl ToProblem for PermissionDenied {
    fn to_problem(&self) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "access denied by authorization policy",
        )
    }
}

/// Whether a request's `content-type` is gRPC's (`application/grpc`,
/// optionally followed by `+format` or `-web…`).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|ct| {
            let prefix = b"application/grpc";
            ct.len() >= prefix.len() && ct[..prefix.len()].eq_ignore_ascii_case(prefix)
        })
}

/// Formats a rule's label: its name, else its position.
pub(crate) struct RuleLabel<'a>(pub(crate) Option<&'a str>, pub(crate) usize);

impl fmt::Display for RuleLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.1),
        }
    }
}
