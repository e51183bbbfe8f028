//! The verified caller ([`Identity`]) and the headers carrying it upstream
//! ([`IdentityHeaders`]): stripped from every incoming request, then set
//! from what a provider verified — so a client can never send them itself.
//!
//! # Example
//!
//! ```
//! use http::HeaderMap;
//! use msp_gateway::auth::{hash_api_key, ApiKeyAuth, Identity, IdentityHeaders};
//! use msp_gateway::config::{ApiKeyConfig, IdentityHeadersConfig};
//!
//! let headers = IdentityHeaders::new(&IdentityHeadersConfig::default())?;
//! let auth = ApiKeyAuth::new("keys", &ApiKeyConfig::new().consumer("web", hash_api_key("k")))?;
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("x-api-key", "k".parse()?);
//! incoming.insert("x-consumer", "admin".parse()?); // spoofed
//! incoming.insert("x-jwt-claim-role", "root".parse()?); // spoofed
//! let consumer = auth.authenticate(&incoming, None)?;
//!
//! headers.strip(&mut incoming);
//! headers.set(&mut incoming, &Identity::from_consumer("keys", &consumer));
//! assert_eq!(incoming["x-consumer"], "web");
//! assert_eq!(incoming["x-auth-provider"], "keys");
//! assert!(!incoming.contains_key("x-jwt-claim-role"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::api_key::Consumer;
use crate::config::IdentityHeadersConfig;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    provider: Arc<str>,
    name: Arc<str>,
    subject: Option<String>,
    claims: Vec<(String, serde_json::Value)>,
}

impl Identity {
    /// An API key's consumer, authenticated by `provider`.
    pub fn from_consumer(provider: &str, consumer: &Consumer) -> Self {
        Identity {
            provider: Arc::from(provider),
            name: Arc::from(consumer.name()),
            subject: None,
            claims: Vec::new(),
        }
    }

    /// A token's subject and forwarded claims, verified by `provider`.
    pub(crate) fn from_token(
        provider: &str,
        subject: Option<String>,
        claims: Vec<(String, serde_json::Value)>,
    ) -> Self {
        Identity {
            provider: Arc::from(provider),
            name: Arc::from(subject.as_deref().unwrap_or_default()),
            subject,
            claims,
        }
    }

    /// The provider that authenticated the request.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The consumer: an API key's consumer name, a token's `sub` (empty
    /// without one). What `rate_limit_by: consumer` keys on.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A token's `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The forwarded claims (a JWT provider's `forward_claims` the token
    /// carries).
    pub fn claims(&self) -> &[(String, serde_json::Value)] {
        &self.claims
    }
}

/// A header name in the identity config is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity header {0:?} is not a header name")]
pub struct InvalidIdentityHeader(pub String);

/// The identity headers of a gateway; see the [`auth` module docs](crate::auth).
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    consumer: HeaderName,
    subject: HeaderName,
    provider: HeaderName,
    claim_prefix: String,
}

impl IdentityHeaders {
    /// The headers named by `config`.
    pub fn new(config: &IdentityHeadersConfig) -> Result<Self, InvalidIdentityHeader> {
        let name = |s: &str| {
            HeaderName::from_bytes(s.as_bytes()).map_err(|_| InvalidIdentityHeader(s.to_owned()))
        };
        let prefix = config.claim_prefix.to_ascii_lowercase();
        if prefix.is_empty() {
            return Err(InvalidIdentityHeader(prefix));
        }
        name(&format!("{prefix}x"))?;
        Ok(IdentityHeaders {
            consumer: name(&config.consumer)?,
            subject: name(&config.subject)?,
            provider: name(&config.provider)?,
            claim_prefix: prefix,
        })
    }

    /// Removes every identity header (all values) from `headers`.
    pub fn strip(&self, headers: &mut HeaderMap) {
        headers.remove(&self.consumer);
        headers.remove(&self.subject);
        headers.remove(&self.provider);
        let claims: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with(&self.claim_prefix))
            .cloned()
            .collect();
        for k in claims {
            headers.remove(&k);
        }
    }

    /// Sets the headers of `identity` (call [`strip`](Self::strip) first).
    /// A value that cannot be a header value (a claim with a line break)
    /// is left out.
    pub fn set(&self, headers: &mut HeaderMap, identity: &Identity) {
        let mut put = |name: HeaderName, value: &str| match HeaderValue::from_str(value) {
            Ok(v) => {
                headers.insert(name, v);
            }
            Err(_) => {
                tracing::debug!(header = %name, "identity value is not a header value; left out")
            }
        };
        put(self.provider.clone(), identity.provider());
        if !identity.name().is_empty() {
            put(self.consumer.clone(), identity.name());
        }
        if let Some(sub) = identity.subject() {
            put(self.subject.clone(), sub);
        }
        for (claim, value) in identity.claims() {
            let Ok(name) = HeaderName::from_bytes(
                format!("{}{}", self.claim_prefix, claim.to_ascii_lowercase()).as_bytes(),
            ) else {
                continue;
            };
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) if items.iter().all(|v| v.is_string()) => items
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            put(name, &text);
        }
    }
}
