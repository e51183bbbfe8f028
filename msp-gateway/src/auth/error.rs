//! [`AuthError`]: why a request is not let through, as `401`, `403` or
//! `503` problem+json with an RFC 6750 / RFC 7235 challenge.
//!
//! # Example
//!
//! ```
//! use msp_core::http::ToProblem;
//! use msp_gateway::auth::{hash_api_key, ApiKeyAuth, AuthErrorKind};
//! use msp_gateway::config::ApiKeyConfig;
//!
//! let auth = ApiKeyAuth::new("keys", &ApiKeyConfig::new().consumer("web", hash_api_key("k")))?;
//! let err = auth.authenticate(&http::HeaderMap::new(), None).unwrap_err();
//! assert_eq!(err.kind(), AuthErrorKind::Missing);
//! assert_eq!(err.to_problem().status(), 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use msp_core::http::{Problem, ProblemBody, ToProblem};
use std::borrow::Cow;
use std::time::Duration;

/// What was wrong with the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials (`401`).
    Missing,
    /// Credentials that identify no one: an unknown key, a token with a bad
    /// signature, an algorithm not pinned, expired, wrong issuer or
    /// audience… (`401`).
    Invalid,
    /// A valid token without a required scope (`403`).
    InsufficientScope,
    /// The provider cannot verify anything yet: its key set was never
    /// fetched (`503`, never `401`: the caller's token may be fine).
    Unavailable,
}

/// A request without valid credentials: `401 Unauthorized` (or `403`,
/// `503`, see [`AuthErrorKind`]) with `WWW-Authenticate`. Credentials are
/// never part of the error.
///
/// [`ToProblem`] gives the body; the `WWW-Authenticate` challenge is not
/// part of a [`Problem`], so answer with [`AuthError::into_response`]
/// (or add [`AuthError::www_authenticate`] yourself) where the error is
/// handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct AuthError {
    kind: AuthErrorKind,
    challenge: HeaderValue,
    /// The challenges of the route's other providers (RFC 7235: one per
    /// scheme the client may use), when no credentials were sent.
    others: Vec<HeaderValue>,
    detail: Cow<'static, str>,
    retry_after: Option<Duration>,
}

impl AuthError {
    pub(crate) fn new(
        kind: AuthErrorKind,
        challenge: HeaderValue,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        AuthError {
            kind,
            challenge,
            others: Vec::new(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// When to try again (a `503` while keys are being fetched).
    pub(crate) fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds the challenge of another provider the request could have used.
    pub(crate) fn also_challenge(mut self, other: &AuthError) -> Self {
        if other.challenge != self.challenge && !self.others.contains(&other.challenge) {
            self.others.push(other.challenge.clone());
        }
        self
    }

    /// What was wrong.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The `WWW-Authenticate` challenge sent with a 401 or 403.
    pub fn www_authenticate(&self) -> &HeaderValue {
        &self.challenge
    }

    /// The problem+json response, with `WWW-Authenticate` on 401 and 403
    /// (one per provider of the route when no credentials were sent).
    pub fn into_response<B>(&self) -> Response<ProblemBody<B>> {
        let mut res = self.to_problem().into_response();
        if matches!(
            res.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let headers = res.headers_mut();
            headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
            for other in &self.others {
                headers.append(WWW_AUTHENTICATE, other.clone());
            }
        }
        res
    }

    /// How specific this error is, for routes with several providers:
    /// the most specific refusal is the one reported.
    pub(crate) fn rank(&self) -> u8 {
        match self.kind {
            AuthErrorKind::Missing => 0,
            AuthErrorKind::Unavailable => 1,
            AuthErrorKind::Invalid => 2,
            AuthErrorKind::InsufficientScope => 3,
        }
    }
}

impl ToProblem for AuthError {
    fn to_problem(&self) -> Problem {
        let (status, code) = match self.kind {
            AuthErrorKind::Missing => (StatusCode::UNAUTHORIZED, "missing_credentials"),
            AuthErrorKind::Invalid => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            AuthErrorKind::InsufficientScope => (StatusCode::FORBIDDEN, "insufficient_scope"),
            AuthErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable"),
        };
        Problem::new(status, code, self.detail.clone()).with_retry_after(self.retry_after)
    }
}

/// Registers [`AuthError`] with msp-core's error vocabulary (once).
pub(crate) fn register() {
    msp_core::http::register::<AuthError>();
}

/// `s` with only the characters an RFC 7235 quoted string may carry
/// unescaped (visible ASCII and space, no `"` or `\`).
pub(crate) fn quotable(s: &str) -> String {
    s.chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
        .collect()
}
