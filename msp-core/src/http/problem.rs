//! [`Problem`]: what an error becomes on the wire (RFC 9457).

use crate::time::ceil_secs;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use serde::Serialize;
use std::borrow::Cow;
use std::time::Duration;

/// The media type of a problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of a response that may be a problem: the inner body
/// (`Either::Left`) or a problem+json document (`Either::Right`).
pub type ProblemBody<B> = Either<B, Full<Bytes>>;

/// An error as an HTTP response: an RFC 9457 `application/problem+json`
/// document, a status, and an optional `Retry-After`.
///
/// - `status`: the HTTP status.
/// - `code`: a stable, machine-readable code (`"no_instances"`,
///   `"rate_limited"`) clients can match on; part of the API.
/// - `detail`: a message **safe to show to the caller**; never put
///   internals (addresses, SQL, secrets) in it.
/// - `retry_after`: sent as `Retry-After` in whole seconds, rounded up and
///   at least 1.
///
/// The body is
/// `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"…","code":"no_instances"}`:
/// `type` is `about:blank`, so `title` is the status's reason phrase, as the
/// RFC says; `code` is an extension member.
///
/// ```
/// use http::StatusCode;
/// use msp_core::http::Problem;
/// use std::time::Duration;
///
/// let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
///     .with_retry_after(Some(Duration::from_millis(1500)));
/// let res = problem.into_response::<()>();
/// assert_eq!(res.status(), 429);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// assert_eq!(res.headers()["retry-after"], "2");
///
/// let body = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no_instances", "say \"hi\"").to_bytes();
/// assert_eq!(
///     body,
///     r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"say \"hi\"","code":"no_instances"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: Cow<'static, str>,
    retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'a str,
}

impl Problem {
    /// A problem without `Retry-After`.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same problem with `Retry-After` set (or cleared with `None`).
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message safe to show.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// When the caller may try again, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The problem+json document.
    pub fn to_bytes(&self) -> Bytes {
        let doc = Document {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Unknown Status"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
        };
        match serde_json::to_vec(&doc) {
            Ok(json) => Bytes::from(json),
            // Serializing strings and an integer cannot fail; stay valid
            // JSON even so.
            Err(_) => Bytes::from_static(br#"{"type":"about:blank","code":"internal"}"#),
        }
    }

    /// The response with a plain problem+json body.
    pub fn into_full_response(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(self.to_bytes()));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(after).max(1)));
        }
        res
    }

    /// The response, with a body type that also fits the inner service's
    /// responses (what [`HttpError`](super::HttpError) returns).
    pub fn into_response<B>(self) -> Response<ProblemBody<B>> {
        self.into_full_response().map(Either::Right)
    }
}

/// An error that knows its HTTP answer.
///
/// Each crate implements it for its own errors (msp-resilience's
/// rejections, `DiscoveryError`, the gateway's errors) and calls
/// [`register`](super::register) where it creates something that can
/// produce them, so one [`HttpErrorLayer`](super::HttpErrorLayer) answers
/// every msp error without user code.
///
/// ```
/// use http::StatusCode;
/// use msp_core::http::{problem_for, register, Problem, ToProblem};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("tenant {0} not found")]
/// struct UnknownTenant(String);
///
/// impl ToProblem for UnknownTenant {
///     fn to_problem(&self) -> Problem {
///         Problem::new(StatusCode::NOT_FOUND, "unknown_tenant", "no such tenant")
///     }
/// }
///
/// register::<UnknownTenant>();
/// let err = std::io::Error::other(UnknownTenant("acme".into()));
/// assert_eq!(problem_for(&err).status(), StatusCode::NOT_FOUND);
/// ```
pub trait ToProblem: std::error::Error + Send + Sync + 'static {
    /// The response for this error.
    fn to_problem(&self) -> Problem;
}
