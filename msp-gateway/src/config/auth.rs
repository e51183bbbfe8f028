//! Auth providers under `auth:`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
///     idp:
///       jwt:
///         algorithms: [RS256]
///         issuer: https://idp.example.com
///         audience: [orders-api]
///         jwks: { url: "http://127.0.0.1:8081/.well-known/jwks.json" }
///   identity_headers:                # the defaults
///     consumer: x-consumer
///     subject: x-jwt-sub
///     provider: x-auth-provider
///     claim_prefix: x-jwt-claim-
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
    /// The headers carrying the verified identity upstream; stripped from
    /// every incoming request first, on every route.
    pub identity_headers: IdentityHeadersConfig,
}

/// The names of the identity headers the gateway sets for upstreams.
///
/// Every incoming request loses these headers (and every header starting
/// with `claim_prefix`) before routing, on routes with and without auth,
/// so only the gateway can set them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct IdentityHeadersConfig {
    /// The consumer: an API key's consumer name, a token's `sub`.
    pub consumer: String,
    /// A token's `sub`.
    pub subject: String,
    /// The name of the provider that authenticated the request.
    pub provider: String,
    /// Prefix of the headers carrying a JWT provider's `forward_claims`
    /// (`x-jwt-claim-` + the claim name, lower-cased).
    pub claim_prefix: String,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        IdentityHeadersConfig {
            consumer: "x-consumer".to_owned(),
            subject: "x-jwt-sub".to_owned(),
            provider: "x-auth-provider".to_owned(),
            claim_prefix: "x-jwt-claim-".to_owned(),
        }
    }
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

/// One auth provider: API keys or JWT bearer tokens.
// Read once per load; boxing the larger variant would only make the
// config awkward to build.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AuthProviderConfig {
    /// API keys per consumer, stored as SHA-256 digests.
    ApiKey(ApiKeyConfig),
    /// JWT bearer tokens verified with pinned algorithms.
    Jwt(JwtConfig),
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

/// JWT bearer tokens: the pinned algorithms, the claims checked and where
/// the keys come from.
///
/// ```yaml
/// jwt:
///   algorithms: [RS256, ES256]     # pinned; a token with any other `alg` is refused
///   issuer: https://idp.example.com
///   audience: [orders-api]         # any one of them must be in `aud`
///   leeway: 30s                    # for exp / nbf (the default)
///   required_claims: [sub, tenant]
///   required_scopes: [orders:read] # in `scope` (space-separated) or `scp` (array)
///   forward_claims: [tenant]       # sent upstream as x-jwt-claim-tenant
///   jwks:
///     url: http://127.0.0.1:8081/.well-known/jwks.json # loopback only; or file: keys/jwks.json
///     min_refresh: 1m              # bounds on Cache-Control: max-age
///     max_refresh: 1h
///     min_refetch_interval: 30s    # unknown `kid`: at most one re-fetch per interval
///     timeout: 5s
/// ```
///
/// HMAC algorithms (`HS256`, `HS384`, `HS512`) take a shared secret of at
/// least 32 bytes instead of `jwks`: `secret_env` (the environment
/// variable holding the base64 secret — what the standalone gateway's file
/// loader, which does not interpolate, needs) or `secret_base64` (a
/// `${ENV}` reference there works when the config is loaded through
/// msp-config with interpolation on). A provider pins HMAC or public-key
/// algorithms, never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The accepted `alg` values (`RS256`/`384`/`512`, `PS256`/`384`/`512`,
    /// `ES256`/`384`, `EdDSA`, or `HS256`/`384`/`512` with a secret).
    pub algorithms: Vec<String>,
    /// The required `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted audiences: `aud` must name one (unchecked when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (default 30 s).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Claims every token must carry (`exp` always is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// Scopes every token must grant (`scope` or `scp`); missing ones are
    /// `403 insufficient_scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// Claims sent upstream in identity headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_claims: Vec<String>,
    /// The header carrying `Bearer <token>` (default `authorization`).
    #[serde(default = "default_token_header")]
    pub header: String,
    /// Where the public keys come from (asymmetric algorithms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksConfig>,
    /// The HMAC secret, base64 (standard or URL-safe alphabet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_base64: Option<Secret>,
    /// The environment variable holding the base64 HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_token_header() -> String {
    "authorization".to_owned()
}

impl JwtConfig {
    /// Tokens signed with one of `algorithms`, keys still to be given
    /// ([`jwks_url`](Self::jwks_url), [`jwks_file`](Self::jwks_file) or
    /// [`secret_base64`](Self::secret_base64)).
    pub fn new(algorithms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        JwtConfig {
            algorithms: algorithms.into_iter().map(Into::into).collect(),
            issuer: None,
            audience: Vec::new(),
            leeway: default_leeway(),
            required_claims: Vec::new(),
            required_scopes: Vec::new(),
            forward_claims: Vec::new(),
            header: default_token_header(),
            jwks: None,
            secret_base64: None,
            secret_env: None,
        }
    }

    /// Keys from a JWKS URL (default refresh settings).
    #[must_use]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks = Some(JwksConfig::url(url));
        self
    }

    /// Keys from a JWKS file.
    #[must_use]
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.jwks = Some(JwksConfig::file(path));
        self
    }

    /// Keys from `jwks`.
    #[must_use]
    pub fn jwks(mut self, jwks: JwksConfig) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// The HMAC secret, base64.
    #[must_use]
    pub fn secret_base64(mut self, secret: impl Into<String>) -> Self {
        self.secret_base64 = Some(Secret(secret.into()));
        self
    }

    /// Requires this `iss`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to name one of these.
    #[must_use]
    pub fn audience(mut self, audience: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audience = audience.into_iter().map(Into::into).collect();
        self
    }

    /// Clock skew allowed on `exp` and `nbf`.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires these claims.
    #[must_use]
    pub fn required_claims(mut self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.required_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// Requires these scopes.
    #[must_use]
    pub fn required_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sends these claims upstream.
    #[must_use]
    pub fn forward_claims(mut self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.forward_claims = claims.into_iter().map(Into::into).collect();
        self
    }
}

/// A secret from the config: never shown by `Debug` and serialized as
/// `<redacted>` — so a serialized config does not carry (or round-trip)
/// its secrets; `secret_env` keeps them out of the config altogether.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Where a JWT provider's public keys come from, and how they are kept
/// fresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwksConfig {
    /// An `http://` URL serving the JWK set, fetched through the
    /// gateway's pooled client. Plain http is accepted only to a loopback
    /// host (127.0.0.0/8, `::1`, `localhost`: a local agent or sidecar);
    /// keys of a remote identity provider go in a [`file`](Self::file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding the JWK set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The shortest refresh period, whatever `Cache-Control: max-age` says
    /// (default 1 min); also the retry period after a failed refresh. At
    /// least 1 s: a file refuses less, a config built in code is raised
    /// to 1 s (and `max_refresh` with it).
    #[serde(default = "default_min_refresh", with = "humantime_serde")]
    pub min_refresh: Duration,
    /// The longest refresh period, and the period without `max-age`
    /// (default 1 h).
    #[serde(default = "default_max_refresh", with = "humantime_serde")]
    pub max_refresh: Duration,
    /// A token with an unknown `kid` re-fetches the set at most once per
    /// this interval (default 30 s); concurrent requests share the fetch.
    #[serde(default = "default_min_refetch", with = "humantime_serde")]
    pub min_refetch_interval: Duration,
    /// The whole fetch, connect to last byte (default 5 s).
    #[serde(default = "default_jwks_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_min_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_max_refresh() -> Duration {
    Duration::from_secs(3600)
}

fn default_min_refetch() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_timeout() -> Duration {
    Duration::from_secs(5)
}

impl JwksConfig {
    /// Keys from `url`, default timings.
    pub fn url(url: impl Into<String>) -> Self {
        JwksConfig {
            url: Some(url.into()),
            ..JwksConfig::empty()
        }
    }

    /// Keys from the file at `path`, default timings.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        JwksConfig {
            file: Some(path.into()),
            ..JwksConfig::empty()
        }
    }

    fn empty() -> Self {
        JwksConfig {
            url: None,
            file: None,
            min_refresh: default_min_refresh(),
            max_refresh: default_max_refresh(),
            min_refetch_interval: default_min_refetch(),
            timeout: default_jwks_timeout(),
        }
    }

    /// Bounds on the refresh period.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max;
        self
    }

    /// The shortest interval between two re-fetches for unknown `kid`s.
    #[must_use]
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// The fetch timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
