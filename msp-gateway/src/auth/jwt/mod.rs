//! JWT bearer tokens verified with pinned algorithms and keys from a JWKS
//! (URL or file) or an HMAC secret; see the [`auth` module docs](super).
//!
//! Verification order: the header is decoded first and its `alg` must be
//! one of the provider's pinned algorithms (`alg: none` is not even an
//! algorithm here); the key must belong to the same family (a provider
//! pins HMAC *or* public-key algorithms, and a JWK set's `oct` keys are
//! never loaded into a public-key provider), so an RS256 public key can
//! never be used as an HS256 secret. Then the signature, `exp` / `nbf`
//! with leeway, `iss`, `aud`, the required claims and the scopes.
//!
//! # Example
//!
//! ```
//! use msp_gateway::auth::JwtAuth;
//! use msp_gateway::config::JwtConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 32 bytes of secret, base64.
//! let config = JwtConfig::new(["HS256"])
//!     .secret_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==")
//!     .issuer("https://idp.example.com");
//! let auth = JwtAuth::new("idp", &config)?;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", "Bearer not.a.token".parse()?);
//! let err = auth.authenticate(&headers).await.unwrap_err();
//! assert_eq!(err.into_response::<()>().status(), 401);
//! # Ok(())
//! # }
//! ```

mod jwks;
mod keys;

use self::jwks::{JwksCache, Source};
use self::keys::KeySet;
use super::error::{AuthError, AuthErrorKind, quotable};
use super::identity::Identity;
use crate::config::JwtConfig;
use crate::proxy::ProxyClient;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Why a [`JwtConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidJwtConfig {
    /// An `algorithms` entry is not a supported JWS algorithm.
    #[error(
        "unknown algorithm {0:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"
    )]
    Algorithm(String),
    /// No algorithm is pinned.
    #[error("no algorithms: pin at least one")]
    NoAlgorithms,
    /// HMAC and public-key algorithms pinned together.
    #[error("HMAC (HS*) and public-key algorithms cannot share a provider")]
    MixedFamilies,
    /// HMAC algorithms without a secret, or a secret for public-key ones.
    #[error("{0}")]
    Secret(String),
    /// Public-key algorithms without a JWKS source, or a bad one.
    #[error("{0}")]
    Jwks(String),
    /// A plain-`http://` `jwks.url` whose host is not loopback: keys
    /// fetched in clear from another host could be swapped on the way.
    #[error(
        "provider {provider:?}: jwks.url {url:?}: plain http is only accepted from a loopback host (127.0.0.0/8, ::1, localhost: a local agent or sidecar); fetch the keys out of band and use `jwks: {{file: …}}`"
    )]
    InsecureJwksUrl {
        /// The provider's name.
        provider: String,
        /// The refused URL.
        url: String,
    },
    /// The token header name is not a header name.
    #[error("token header {0:?} is not a header name")]
    Header(String),
    /// JWKS refreshing runs on tokio: build inside a runtime.
    #[error("a JWKS provider must be built inside a tokio runtime")]
    NoRuntime,
}

/// What an admin sees of a JWT provider: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JwtStatus {
    /// The provider's name.
    pub provider: String,
    /// The required issuer.
    pub issuer: Option<String>,
    /// The pinned algorithms.
    pub algorithms: Vec<String>,
    /// `jwks_url`, `jwks_file` or `secret`.
    pub keys_from: String,
    /// The key ids of the current key set.
    pub key_ids: Vec<String>,
    /// When the current key set was fetched (RFC 3339).
    pub last_fetch: Option<String>,
    /// The last fetch's error, until one succeeds.
    pub last_error: Option<String>,
    /// Fetch attempts so far.
    pub fetches: u64,
}

enum Keys {
    Secret(Arc<KeySet>),
    Jwks(Arc<JwksCache>),
}

struct Inner {
    provider: String,
    realm: String,
    header: HeaderName,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    /// One per algorithm family pinned: jsonwebtoken wants every
    /// algorithm of a `Validation` in the verifying key's family.
    validations: Vec<Validation>,
    required_claims: Vec<String>,
    required_scopes: Vec<String>,
    forward_claims: Vec<String>,
    keys: Keys,
}

/// The JWKS providers alive in this process, for [`JwtAuth::shared`].
type Live = Vec<(String, JwtConfig, std::sync::Weak<Inner>)>;
static LIVE: std::sync::Mutex<Live> = std::sync::Mutex::new(Vec::new());

/// JWT authentication for one provider; see the [`auth` module docs](crate::auth).
/// Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct JwtAuth {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("provider", &self.inner.provider)
            .field("algorithms", &self.inner.algorithms)
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// The pinned algorithms of `names`, and whether they are HMAC ones.
pub(crate) fn pinned(names: &[String]) -> Result<(Vec<Algorithm>, bool), InvalidJwtConfig> {
    let mut algorithms = Vec::new();
    for name in names {
        let alg =
            Algorithm::from_str(name).map_err(|_| InvalidJwtConfig::Algorithm(name.clone()))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let first = algorithms.first().ok_or(InvalidJwtConfig::NoAlgorithms)?;
    let hmac = first.family() == AlgorithmFamily::Hmac;
    if algorithms
        .iter()
        .any(|a| (a.family() == AlgorithmFamily::Hmac) != hmac)
    {
        return Err(InvalidJwtConfig::MixedFamilies);
    }
    // RSA, EC and EdDSA keys may share a public-key provider; each key is
    // matched to the token's algorithm by its own family.
    Ok((algorithms, hmac))
}

/// The HMAC secret from base64 (standard or URL-safe, padded or not).
fn decode_secret(b64: &str) -> Result<DecodingKey, InvalidJwtConfig> {
    let mut std: String = b64
        .trim()
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !std.len().is_multiple_of(4) {
        std.push('=');
    }
    let key = DecodingKey::from_base64_secret(&std)
        .map_err(|_| InvalidJwtConfig::Secret("the HMAC secret is not base64".into()))?;
    let len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
    if len < 32 {
        return Err(InvalidJwtConfig::Secret(format!(
            "the HMAC secret is {len} bytes; at least 32 are needed"
        )));
    }
    Ok(key)
}

impl JwtAuth {
    /// Authentication for the provider `name` configured by `config`. A
    /// JWKS URL is fetched through a [`ProxyClient`] of its own, in the
    /// background from now on (so this must run inside a tokio runtime);
    /// a JWKS file is read now.
    pub fn new(name: impl Into<String>, config: &JwtConfig) -> Result<Self, InvalidJwtConfig> {
        Self::with_client(name, config, ProxyClient::new())
    }

    /// Like [`new`](Self::new), but a provider of the same name and
    /// config that is still alive in this process (the generation a reload
    /// is replacing) is shared, key cache included: a reload keeps the
    /// last good key set — even while the JWKS endpoint is down — and
    /// does not re-fetch. HMAC providers are always built anew (their
    /// secret may come from the environment).
    pub fn shared(name: impl Into<String>, config: &JwtConfig) -> Result<Self, InvalidJwtConfig> {
        let name = name.into();
        if config.jwks.is_none() {
            return Self::new(name, config);
        }
        let mut live = LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|(_, _, weak)| weak.strong_count() > 0);
        let found = live
            .iter()
            .filter(|(n, c, _)| *n == name && c == config)
            .find_map(|(_, _, weak)| weak.upgrade());
        if let Some(inner) = found {
            return Ok(JwtAuth { inner });
        }
        let auth = Self::new(name.clone(), config)?;
        live.push((name, config.clone(), Arc::downgrade(&auth.inner)));
        Ok(auth)
    }

    /// Like [`new`](Self::new), fetching a JWKS URL through `client`.
    pub fn with_client(
        name: impl Into<String>,
        config: &JwtConfig,
        client: ProxyClient,
    ) -> Result<Self, InvalidJwtConfig> {
        super::error::register();
        let provider = name.into();
        let (algorithms, hmac) = pinned(&config.algorithms)?;
        let header = HeaderName::from_bytes(config.header.as_bytes())
            .map_err(|_| InvalidJwtConfig::Header(config.header.clone()))?;
        let keys = if hmac {
            if config.jwks.is_some() {
                return Err(InvalidJwtConfig::Jwks(
                    "HMAC algorithms take a secret, not `jwks`".into(),
                ));
            }
            let b64 = match (&config.secret_base64, &config.secret_env) {
                (Some(s), None) => s.expose().to_owned(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    InvalidJwtConfig::Secret(format!("secret_env: ${var} is not set"))
                })?,
                (Some(_), Some(_)) => {
                    return Err(InvalidJwtConfig::Secret(
                        "`secret_base64` or `secret_env`, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(InvalidJwtConfig::Secret(
                        "HMAC algorithms need `secret_base64` or `secret_env`".into(),
                    ));
                }
            };
            Keys::Secret(Arc::new(KeySet::single(decode_secret(&b64)?)))
        } else {
            if config.secret_base64.is_some() || config.secret_env.is_some() {
                return Err(InvalidJwtConfig::Secret(
                    "a secret is only used with HMAC (HS*) algorithms".into(),
                ));
            }
            let jwks = config.jwks.as_ref().ok_or_else(|| {
                InvalidJwtConfig::Jwks("public-key algorithms need `jwks: {url|file}`".into())
            })?;
            let source = match (&jwks.url, &jwks.file) {
                (Some(url), None) => Source::Url {
                    uri: jwks_uri(&provider, url)?,
                    client: Box::new(client),
                },
                (None, Some(file)) => Source::File(file.clone()),
                _ => {
                    return Err(InvalidJwtConfig::Jwks(
                        "`jwks` needs exactly one of `url` and `file`".into(),
                    ));
                }
            };
            let is_file = matches!(source, Source::File(_));
            let cache = Arc::new(JwksCache::new(&provider, source, jwks, algorithms.clone()));
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(InvalidJwtConfig::NoRuntime);
            }
            let first = if is_file {
                cache.load_file_now().map_err(InvalidJwtConfig::Jwks)?;
                cache.max_refresh()
            } else {
                Duration::ZERO
            };
            jwks::spawn_refresher(&cache, first);
            Keys::Jwks(cache)
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut spec = vec!["exp".to_owned()];
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            spec.push("iss".into());
        }
        if config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audience);
            spec.push("aud".into());
        }
        validation.set_required_spec_claims(&spec);
        let mut validations: Vec<Validation> = Vec::new();
        for alg in &algorithms {
            match validations.iter_mut().find(|v| {
                v.algorithms
                    .first()
                    .is_some_and(|a| a.family() == alg.family())
            }) {
                Some(v) => v.algorithms.push(*alg),
                None => {
                    let mut v = validation.clone();
                    v.algorithms = vec![*alg];
                    validations.push(v);
                }
            }
        }
        Ok(JwtAuth {
            inner: Arc::new(Inner {
                realm: quotable(&provider),
                provider,
                header,
                algorithms,
                issuer: config.issuer.clone(),
                validations,
                required_claims: config.required_claims.clone(),
                required_scopes: config.required_scopes.clone(),
                forward_claims: config.forward_claims.clone(),
                keys,
            }),
        })
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// What an admin may see: issuer, algorithms, key ids, the last fetch
    /// and its error.
    pub fn status(&self) -> JwtStatus {
        let i = &self.inner;
        let (keys_from, key_ids, last_fetch, last_error, fetches) = match &i.keys {
            Keys::Secret(_) => ("secret", Vec::new(), None, None, 0),
            Keys::Jwks(cache) => {
                let s = cache.state();
                (
                    "jwks",
                    s.keys.as_ref().map(|k| k.kids()).unwrap_or_default(),
                    s.fetched_at
                        .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    s.last_error.clone(),
                    cache.fetches(),
                )
            }
        };
        JwtStatus {
            provider: i.provider.clone(),
            issuer: i.issuer.clone(),
            algorithms: i.algorithms.iter().map(|a| format!("{a:?}")).collect(),
            keys_from: keys_from.to_owned(),
            key_ids,
            last_fetch,
            last_error,
            fetches,
        }
    }

    /// The identity of the bearer token in the request's headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = self.token(headers)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| self.invalid("the token is malformed or its algorithm unsupported"))?;
        if !self.inner.algorithms.contains(&header.alg) {
            return Err(self.invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        // No extension is understood, so none may be critical (RFC 7515
        // §4.1.11). Keys named in the token (`jwk`, `jku`, `x5u`, `x5c`)
        // are never used: only the provider's own.
        if header.crit.is_some() {
            return Err(self.invalid("critical header parameters are not supported"));
        }
        let kid = header.kid.as_deref();
        let claims = match &self.inner.keys {
            Keys::Secret(set) => self.verify(token, set, kid, header.alg)?,
            Keys::Jwks(cache) => {
                let mut state = cache.state();
                let needs_fetch = match (&state.keys, kid) {
                    (None, _) => true,
                    (Some(set), Some(kid)) => !set.has_kid(kid),
                    (Some(_), None) => false,
                };
                if needs_fetch {
                    state = cache.refetch(state.generation).await;
                }
                let Some(set) = &state.keys else {
                    return Err(AuthError::new(
                        AuthErrorKind::Unavailable,
                        self.challenge(None),
                        format!(
                            "the signing keys of auth provider {:?} are not available yet",
                            self.inner.provider
                        ),
                    )
                    .retry_after(cache.retry_after()));
                };
                self.verify(token, set, kid, header.alg)?
            }
        };
        self.check(claims)
    }

    /// The token of the configured header: `Bearer <token>` (a custom
    /// header may carry the bare token).
    fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, AuthError> {
        let mut values = headers.get_all(&self.inner.header).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(self.invalid("more than one token")),
            (Some(v), None) => Some(v),
        };
        let Some(value) = value else {
            return Err(AuthError::new(
                AuthErrorKind::Missing,
                self.challenge(None),
                "a bearer token is required",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| self.invalid("the token is malformed"))?
            .trim();
        let token = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            Some(_) => {
                return Err(AuthError::new(
                    AuthErrorKind::Missing,
                    self.challenge(None),
                    "a bearer token is required",
                ));
            }
            None if self.inner.header != http::header::AUTHORIZATION => value,
            None => return Err(self.invalid("the token is malformed")),
        };
        if token.is_empty() {
            return Err(AuthError::new(
                AuthErrorKind::Missing,
                self.challenge(None),
                "a bearer token is required",
            ));
        }
        Ok(token)
    }

    /// The claims of `token` under the first key of `set` that verifies
    /// it.
    fn verify(
        &self,
        token: &str,
        set: &KeySet,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, AuthError> {
        let validation = self
            .inner
            .validations
            .iter()
            .find(|v| v.algorithms.contains(&alg))
            .ok_or_else(|| self.invalid(format!("algorithm {alg:?} is not accepted")))?;
        let mut last = None;
        for entry in set.candidates(kid, alg) {
            // The key's family must be the algorithm's: never an RSA key
            // as an HMAC secret, whatever the header says.
            if entry.key.family() != alg.family() {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    // Another key may verify it.
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey => last = Some(e),
                    // The signature was good: the claims are not.
                    _ => return Err(self.invalid(describe(e.kind()))),
                },
            }
        }
        Err(self.invalid(match (last, kid) {
            (Some(_), _) => "the signature is not valid".to_owned(),
            (None, Some(kid)) => format!(
                "no key with kid {:?}",
                quotable(kid).chars().take(64).collect::<String>()
            ),
            (None, None) => "no key for this token".to_owned(),
        }))
    }

    /// Required claims and scopes, then the identity.
    fn check(&self, claims: Map<String, Value>) -> Result<Identity, AuthError> {
        for c in &self.inner.required_claims {
            if claims.get(c).is_none_or(Value::is_null) {
                return Err(self.invalid(format!("the token lacks the claim {:?}", quotable(c))));
            }
        }
        let granted = scopes(&claims);
        let missing: Vec<&str> = self
            .inner
            .required_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !granted.contains(s))
            .collect();
        if !missing.is_empty() {
            let need = self.inner.required_scopes.join(" ");
            let detail = format!("the token lacks the scope {}", missing.join(" "));
            let challenge = format!(
                r#"Bearer realm="{}", error="insufficient_scope", error_description="{}", scope="{}""#,
                self.inner.realm,
                quotable(&detail),
                quotable(&need)
            );
            return Err(AuthError::new(
                AuthErrorKind::InsufficientScope,
                HeaderValue::from_str(&challenge).unwrap_or_else(|_| self.challenge(None)),
                detail,
            ));
        }
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let forwarded = self
            .inner
            .forward_claims
            .iter()
            .filter_map(|c| Some((c.clone(), claims.get(c)?.clone())))
            .collect();
        Ok(Identity::from_token(
            &self.inner.provider,
            subject,
            forwarded,
        ))
    }

    fn invalid(&self, detail: impl Into<String>) -> AuthError {
        let detail = detail.into();
        AuthError::new(
            AuthErrorKind::Invalid,
            self.challenge(Some(&detail)),
            detail,
        )
    }

    /// `Bearer realm="…"`, with `error="invalid_token"` and its
    /// description for a bad token (RFC 6750 §3).
    fn challenge(&self, invalid: Option<&str>) -> HeaderValue {
        let text = match invalid {
            None => format!(r#"Bearer realm="{}""#, self.inner.realm),
            Some(d) => format!(
                r#"Bearer realm="{}", error="invalid_token", error_description="{}""#,
                self.inner.realm,
                quotable(d)
            ),
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// An `http://` JWKS URL to a loopback host (the gateway's client speaks
/// plain HTTP, which is only safe to a local agent or sidecar).
pub(crate) fn jwks_uri(provider: &str, url: &str) -> Result<http::Uri, InvalidJwtConfig> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| InvalidJwtConfig::Jwks(format!("jwks.url {url:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(is_loopback) => Ok(uri),
        Some("http") if uri.host().is_some() => Err(InvalidJwtConfig::InsecureJwksUrl {
            provider: provider.to_owned(),
            url: url.to_owned(),
        }),
        Some("https") => Err(InvalidJwtConfig::Jwks(
            "jwks.url: https is not supported by the gateway's client yet; use an http:// URL (a local sidecar) or `file`".into(),
        )),
        _ => Err(InvalidJwtConfig::Jwks(format!(
            "jwks.url {url:?} must be an absolute http:// URL"
        ))),
    }
}

/// `localhost`, or an address in 127.0.0.0/8 or `::1` (also written as
/// an IPv4-mapped IPv6 address).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::MissingRequiredClaim(c) => {
            format!("the token lacks the claim {:?}", quotable(c))
        }
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".into(),
        _ => "the token is malformed".into(),
    }
}

/// The scopes a token grants: `scope` (space-separated) and `scp` (an
/// array, or a space-separated string).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}
