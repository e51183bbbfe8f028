//! API keys per consumer, stored as SHA-256 digests; see the
//! [`auth` module docs](super).
//!
//! # Example
//!
//! ```
//! use http::HeaderMap;
//! use msp_gateway::auth::{hash_api_key, ApiKeyAuth};
//! use msp_gateway::config::ApiKeyConfig;
//!
//! let auth = ApiKeyAuth::new("keys", &ApiKeyConfig::new().consumer("web", hash_api_key("k1")))?;
//! let mut headers = HeaderMap::new();
//! headers.insert("x-api-key", "k1".parse()?);
//! assert_eq!(auth.authenticate(&headers, None)?.name(), "web");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::error::{AuthError, AuthErrorKind};
use crate::config::ApiKeyConfig;
use http::header::{HeaderMap, HeaderName, HeaderValue};
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

/// API-key authentication for one provider; see the [`auth` module docs](crate::auth).
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
        super::error::register();
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
        let realm = super::error::quotable(&provider);
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
        let detail = match kind {
            AuthErrorKind::Missing => "an API key is required",
            _ => "the API key is not valid",
        };
        AuthError::new(kind, self.inner.challenge.clone(), detail)
    }
}
