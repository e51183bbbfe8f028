//! Authentication at the edge. Today: API keys per consumer, stored as
//! SHA-256 digests (JWT arrives with the edge-policies issue).
//!
//! [`ApiKeyAuth`] reads the key from a header (`x-api-key` by default) or,
//! when configured, a query parameter, hashes it and compares the digest
//! with every consumer's in constant time (`subtle`), so neither the
//! comparison nor which consumer matched shows in the timing. It returns the
//! [`Consumer`], whose name is what `rate_limit_by: consumer` keys on. A
//! missing or wrong key is an [`AuthError`]: `401` with `WWW-Authenticate`
//! and a problem+json body ([`AuthError::into_response`]). Keys never appear
//! in the config, in errors or in `Debug` output — only digests; make one
//! with [`hash_api_key`] or `cargo run -p msp-gateway --example hash_api_key -- KEY`.
//!
//! # Example
//!
//! ```
//! use http::HeaderMap;
//! use msp_gateway::auth::{hash_api_key, ApiKeyAuth};
//! use msp_gateway::config::ApiKeyConfig;
//!
//! let config = ApiKeyConfig::new()
//!     .query("api_key")
//!     .consumer("mobile-app", hash_api_key("s3cret-key"));
//! let auth = ApiKeyAuth::new("keys", &config)?;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-api-key", "s3cret-key".parse()?);
//! assert_eq!(auth.authenticate(&headers, None)?.name(), "mobile-app");
//! assert_eq!(auth.authenticate(&HeaderMap::new(), Some("api_key=s3cret-key"))?.name(), "mobile-app");
//!
//! let err = auth.authenticate(&HeaderMap::new(), None).unwrap_err();
//! let res = err.into_response::<()>();
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], r#"ApiKey realm="keys", header="x-api-key""#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::config::ApiKeyConfig;
use http::header::{HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use msp_core::http::{Problem, ProblemBody, ToProblem};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// The hex SHA-256 digest of an API key: what goes into `key_sha256`.
///
/// ```
/// assert_eq!(
///     msp_gateway::auth::hash_api_key("test"),
///     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/// );
/// ```
pub fn hash_api_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 64 hex digits (any case) → 32 bytes.
pub(crate) fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Consumer {
    name: Arc<str>,
}

impl Consumer {
    /// The consumer's configured name (a rate-limit key, an identity header).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why an [`ApiKeyConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidApiKeyConfig {
    /// The header name is not valid.
    #[error("api key header {0:?} is not a header name")]
    Header(String),
    /// A consumer's `key_sha256` is not 64 hex digits.
    #[error("consumer {0:?}: key_sha256 must be 64 hex digits (the SHA-256 of the key)")]
    Digest(String),
}

/// API-key authentication for one provider; see the [module docs](self).
/// Cheap to clone.
#[derive(Clone)]
pub struct ApiKeyAuth {
    inner: Arc<Inner>,
}

struct Inner {
    provider: String,
    header: HeaderName,
    query: Option<String>,
    digests: Vec<[u8; 32]>,
    consumers: Vec<Consumer>,
    challenge: HeaderValue,
}

impl fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("provider", &self.inner.provider)
            .field("header", &self.inner.header)
            .field("query", &self.inner.query)
            .field(
                "consumers",
                &self
                    .inner
                    .consumers
                    .iter()
                    .map(Consumer::name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ApiKeyAuth {
    /// Authentication for the provider `name` configured by `config`.
    pub fn new(
        name: impl Into<String>,
        config: &ApiKeyConfig,
    ) -> Result<Self, InvalidApiKeyConfig> {
        msp_core::http::register::<AuthError>();
        let provider = name.into();
        let header = HeaderName::from_bytes(config.header.as_bytes())
            .map_err(|_| InvalidApiKeyConfig::Header(config.header.clone()))?;
        let mut digests = Vec::with_capacity(config.consumers.len());
        let mut consumers = Vec::with_capacity(config.consumers.len());
        for c in &config.consumers {
            digests.push(
                parse_digest(&c.key_sha256)
                    .ok_or_else(|| InvalidApiKeyConfig::Digest(c.name.clone()))?,
            );
            consumers.push(Consumer {
                name: Arc::from(c.name.as_str()),
            });
        }
        let realm: String = provider
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
            .collect();
        let challenge = HeaderValue::from_str(&format!(
            r#"ApiKey realm="{realm}", header="{}""#,
            header.as_str()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
        Ok(ApiKeyAuth {
            inner: Arc::new(Inner {
                provider,
                header,
                query: config.query.clone(),
                digests,
                consumers,
                challenge,
            }),
        })
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The consumer whose key the request carries: from the header, else
    /// from the query parameter (when configured). Two values of the header
    /// are refused (ambiguous).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Consumer, AuthError> {
        let mut values = headers.get_all(&self.inner.header).iter();
        let key: Option<std::borrow::Cow<'_, [u8]>> = match (values.next(), values.next()) {
            (Some(_), Some(_)) => return Err(self.error(AuthErrorKind::Invalid)),
            (Some(v), None) => Some(v.as_bytes().into()),
            (None, _) => self.inner.query.as_deref().and_then(|name| {
                query?.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k == name).then(|| percent_encoding::percent_decode_str(v).into())
                })
            }),
        };
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(self.error(AuthErrorKind::Missing));
        };
        let digest: [u8; 32] = Sha256::digest(&key).into();
        // Compare with every consumer, whatever matches: constant time.
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, d) in self.inner.digests.iter().enumerate() {
            let eq = d.ct_eq(&digest);
            index = u32::conditional_select(&index, &u32::try_from(i).unwrap_or(u32::MAX), eq);
            found |= eq;
        }
        if bool::from(found)
            && let Some(c) = usize::try_from(index)
                .ok()
                .and_then(|i| self.inner.consumers.get(i))
        {
            return Ok(c.clone());
        }
        Err(self.error(AuthErrorKind::Invalid))
    }

    fn error(&self, kind: AuthErrorKind) -> AuthError {
        AuthError {
            kind,
            challenge: self.inner.challenge.clone(),
        }
    }
}

/// What was wrong with the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials.
    Missing,
    /// Credentials that identify no consumer.
    Invalid,
}

/// A request without valid credentials: `401 Unauthorized` with
/// `WWW-Authenticate`. The key is never part of the error.
///
/// [`ToProblem`] gives the body; the `WWW-Authenticate` challenge is not
/// part of a [`Problem`], so answer with [`AuthError::into_response`]
/// (or add [`AuthError::www_authenticate`] yourself) where the error is
/// handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match self.kind {
    AuthErrorKind::Missing => "an API key is required",
    AuthErrorKind::Invalid => "the API key is not valid",
})]
pub struct AuthError {
    kind: AuthErrorKind,
    challenge: HeaderValue,
}

impl AuthError {
    /// What was wrong.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The `WWW-Authenticate` challenge to send with the 401.
    pub fn www_authenticate(&self) -> &HeaderValue {
        &self.challenge
    }

    /// The 401 problem+json response with `WWW-Authenticate`.
    pub fn into_response<B>(&self) -> Response<ProblemBody<B>> {
        let mut res = self.to_problem().into_response();
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, self.challenge.clone());
        res
    }
}

impl ToProblem for AuthError {
    fn to_problem(&self) -> Problem {
        let (code, detail) = match self.kind {
            AuthErrorKind::Missing => ("missing_credentials", "an API key is required"),
            AuthErrorKind::Invalid => ("invalid_credentials", "the API key is not valid"),
        };
        Problem::new(StatusCode::UNAUTHORIZED, code, detail)
    }
}
