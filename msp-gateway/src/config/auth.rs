//! Auth providers under `auth:`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `auth:` section: named providers and the one `auth_required` uses.
///
/// ```yaml
/// auth:
///   default_provider: keys
///   providers:
///     keys:
///       api_key:
///         header: x-api-key        # the default
///         query: api_key           # optional
///         consumers:
///           - name: mobile-app
///             key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The provider of routes with `auth_required: true` and no `auth` list
    /// (default: the only provider, when there is exactly one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_provider: Option<String>,
    /// Providers by name.
    pub providers: BTreeMap<String, AuthProviderConfig>,
}

impl AuthConfig {
    /// The provider used when a route requires auth without naming one.
    pub fn default_provider_name(&self) -> Option<&str> {
        match &self.default_provider {
            Some(name) => Some(name),
            None if self.providers.len() == 1 => self.providers.keys().next().map(String::as_str),
            None => None,
        }
    }
}

/// One auth provider; today API keys, JWT arrives with the edge-policies
/// issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AuthProviderConfig {
    /// API keys per consumer, stored as SHA-256 digests.
    ApiKey(ApiKeyConfig),
}

/// API keys: where the key is read from and the consumers it identifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKeyConfig {
    /// The request header carrying the key (default `x-api-key`).
    #[serde(default = "default_header")]
    pub header: String,
    /// A query parameter that may carry the key instead (off by default:
    /// keys in URLs end up in logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The consumers.
    #[serde(default)]
    pub consumers: Vec<ConsumerConfig>,
}

fn default_header() -> String {
    "x-api-key".to_owned()
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        ApiKeyConfig {
            header: default_header(),
            query: None,
            consumers: Vec::new(),
        }
    }
}

impl ApiKeyConfig {
    /// Keys from the `x-api-key` header, no consumers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the key from this header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// Also reads the key from this query parameter.
    #[must_use]
    pub fn query(mut self, name: impl Into<String>) -> Self {
        self.query = Some(name.into());
        self
    }

    /// Adds a consumer by the hex SHA-256 digest of its key (see
    /// [`hash_api_key`](crate::auth::hash_api_key)).
    #[must_use]
    pub fn consumer(mut self, name: impl Into<String>, key_sha256: impl Into<String>) -> Self {
        self.consumers.push(ConsumerConfig {
            name: name.into(),
            key_sha256: key_sha256.into(),
        });
        self
    }
}

/// A consumer: its name (what `rate_limit_by: consumer` keys on) and the
/// SHA-256 digest of its key, as 64 hex digits. The key itself is never in
/// the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer's name.
    pub name: String,
    /// Hex SHA-256 of the key.
    pub key_sha256: String,
}
