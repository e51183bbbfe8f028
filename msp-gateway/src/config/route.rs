//! [`RouteConfig`]: one entry of `routes:`.

use crate::transform::{HeaderTransformConfig, JsonTransformConfig};
use http::Method;
use msp_resilience::rate_limit::Quota;
use msp_resilience::{BulkheadConfig, CircuitBreakerConfig, RetryConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

/// One route: which requests it matches and where and how they go.
///
/// Deserialized with `deny_unknown_fields`; the seed's form
/// (`path`, `service`, `methods`, `auth_required`, `rate_limit`, `cache_ttl`)
/// and the expanded one share this type. Checked as part of a
/// [`GatewayConfig`](super::GatewayConfig), which knows the services and
/// auth providers a route refers to. In code, start from
/// [`RouteConfig::new`] and chain the setters.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | none | an id for logs, metrics and admin (default: the path) |
/// | `path` | required | `/api/users/*` (also matches `/api/users`), `/api/users/{id}`, `/files/{*rest}` |
/// | `service` | — | the upstream service (or `split`) |
/// | `split` | `[]` | weighted services `[{service, weight}]` (canary) |
/// | `methods` | all | `["GET", "POST"]`; `GET` also answers `HEAD` |
/// | `host` | any | `api.example.com` or `*.example.com` (port ignored) |
/// | `headers` | `{}` | `{name: value}`, every one must be present with that value |
/// | `query` | `{}` | `{name: value}`, every one must be present with that value |
/// | `strip_prefix` | `false` | `true` strips the path's static prefix, a string strips that prefix |
/// | `rewrite` | none | an upstream path template: `/v2/users/{id}`, `/internal/*` |
/// | `preserve_host` | `false` | forward the client's `Host` instead of the upstream's |
/// | `auth_required` | `false` | authenticate with `auth` or the default provider |
/// | `auth` | `[]` | provider names tried in order |
/// | `rate_limit` | none | a [`Quota`]: `1000/hour`, `50/s burst 100` |
/// | `rate_limit_by` | `route` | `route`, `ip`, `consumer` or `{header: name}` |
/// | `cache_ttl` | none | seconds; turns the [response cache](crate::cache) on: the lifetime of responses that give none (`s-maxage`/`max-age` win) |
/// | `cache_max_bytes` | 64 MiB | the route's cache size in bytes (bodies + headers) |
/// | `timeout` | none | per-request upstream timeout, `2s` |
/// | `retry` | none | a [`RetryConfig`] (`max_attempts`, `backoff`, `budget`…) |
/// | `breaker` | none | a [`CircuitBreakerConfig`] for the upstream service |
/// | `bulkhead` | none | a [`BulkheadConfig`] (`max_concurrent`, `max_queue`, `max_wait`) |
/// | `mirror` | none | `{service, percent}`: shadow traffic, responses dropped |
/// | `request_headers` | none | a [`HeaderTransformConfig`]: `{add, set, remove, rename}` on the way up ([transforms](crate::transform)) |
/// | `response_headers` | none | a [`HeaderTransformConfig`] on the way back |
/// | `response_json` | none | a [`JsonTransformConfig`]: `{allow, deny, rename, max_bytes}` on JSON response bodies |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
#[must_use]
pub struct RouteConfig {
    /// An id for logs, metrics and the admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The path pattern.
    pub path: String,
    /// The upstream service (exclusive with `split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Weighted upstream services (exclusive with `service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitTarget>,
    /// Allowed methods; empty means every method.
    #[serde(default, with = "methods", skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<Method>,
    /// The host the request must name (`*.example.com` for any subdomain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers the request must carry, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters the request must carry, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// What to strip from the path before forwarding.
    #[serde(default)]
    pub strip_prefix: StripPrefix,
    /// An upstream path template (params by name, `*` for the wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Forward the client's `Host` header unchanged.
    #[serde(default)]
    pub preserve_host: bool,
    /// Requests must authenticate (with `auth` or the default provider).
    #[serde(default)]
    pub auth_required: bool,
    /// Auth providers to try, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<String>,
    /// The route's rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Quota>,
    /// What the rate limit counts per.
    #[serde(default, alias = "limit_by")]
    pub rate_limit_by: RateLimitBy,
    /// Response cache lifetime in seconds for responses that give none;
    /// set, it turns the [response cache](crate::cache) on for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<u64>,
    /// The route's cache size in bytes (default
    /// [`DEFAULT_MAX_BYTES`](crate::cache::DEFAULT_MAX_BYTES)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_bytes: Option<NonZeroU64>,
    /// Upstream timeout per request.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Retries of failed upstream calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The circuit breaker of the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<CircuitBreakerConfig>,
    /// A concurrency limit for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<BulkheadConfig>,
    /// Shadow traffic to another service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorConfig>,
    /// Header edits of requests going upstream.
    #[serde(default, skip_serializing_if = "HeaderTransformConfig::is_empty")]
    pub request_headers: HeaderTransformConfig,
    /// Header edits of responses going to the client.
    #[serde(default, skip_serializing_if = "HeaderTransformConfig::is_empty")]
    pub response_headers: HeaderTransformConfig,
    /// Field edits of JSON response bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_json: Option<JsonTransformConfig>,
}

impl RouteConfig {
    /// A route for `path` with every other field at its default; give it a
    /// [`service`](Self::service) or a [`split`](Self::split).
    pub fn new(path: impl Into<String>) -> Self {
        RouteConfig {
            name: None,
            path: path.into(),
            service: None,
            split: Vec::new(),
            methods: Vec::new(),
            host: None,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            strip_prefix: StripPrefix::None,
            rewrite: None,
            preserve_host: false,
            auth_required: false,
            auth: Vec::new(),
            rate_limit: None,
            rate_limit_by: RateLimitBy::Route,
            cache_ttl: None,
            cache_max_bytes: None,
            timeout: None,
            retry: None,
            breaker: None,
            bulkhead: None,
            mirror: None,
            request_headers: HeaderTransformConfig::default(),
            response_headers: HeaderTransformConfig::default(),
            response_json: None,
        }
    }

    /// The route's id: its name, else its path.
    pub fn id(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.path)
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sends requests to `service`.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Adds a weighted target to the split.
    pub fn split(mut self, service: impl Into<String>, weight: u32) -> Self {
        self.split.push(SplitTarget {
            service: service.into(),
            weight,
        });
        self
    }

    /// Restricts the methods.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Requires a host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Requires a header with a value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Requires a query parameter with a value.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.insert(name.into(), value.into());
        self
    }

    /// Sets what is stripped from the path.
    pub fn strip_prefix(mut self, strip: StripPrefix) -> Self {
        self.strip_prefix = strip;
        self
    }

    /// Sets an upstream path template.
    pub fn rewrite(mut self, template: impl Into<String>) -> Self {
        self.rewrite = Some(template.into());
        self
    }

    /// Forwards the client's `Host`.
    pub fn preserve_host(mut self, yes: bool) -> Self {
        self.preserve_host = yes;
        self
    }

    /// Requires authentication.
    pub fn auth_required(mut self, yes: bool) -> Self {
        self.auth_required = yes;
        self
    }

    /// Names the auth providers to try.
    pub fn auth(mut self, providers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.auth = providers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the rate limit.
    pub fn rate_limit(mut self, quota: Quota) -> Self {
        self.rate_limit = Some(quota);
        self
    }

    /// Sets what the rate limit counts per.
    pub fn rate_limit_by(mut self, by: RateLimitBy) -> Self {
        self.rate_limit_by = by;
        self
    }

    /// Sets the cache lifetime in seconds.
    pub fn cache_ttl(mut self, secs: u64) -> Self {
        self.cache_ttl = Some(secs);
        self
    }

    /// Bounds the route's cache to `bytes`.
    pub fn cache_max_bytes(mut self, bytes: NonZeroU64) -> Self {
        self.cache_max_bytes = Some(bytes);
        self
    }

    /// Sets the upstream timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets retries.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the breaker.
    pub fn breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Sets the bulkhead.
    pub fn bulkhead(mut self, bulkhead: BulkheadConfig) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// Mirrors `percent` of requests to `service`.
    pub fn mirror(mut self, service: impl Into<String>, percent: f64) -> Self {
        self.mirror = Some(MirrorConfig {
            service: service.into(),
            percent,
        });
        self
    }

    /// Sets the header edits of requests going upstream.
    pub fn request_headers(mut self, edits: HeaderTransformConfig) -> Self {
        self.request_headers = edits;
        self
    }

    /// Sets the header edits of responses going to the client.
    pub fn response_headers(mut self, edits: HeaderTransformConfig) -> Self {
        self.response_headers = edits;
        self
    }

    /// Sets the field edits of JSON response bodies.
    pub fn response_json(mut self, edits: JsonTransformConfig) -> Self {
        self.response_json = Some(edits);
        self
    }
}

/// One weighted target of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTarget {
    /// The service.
    pub service: String,
    /// Its share relative to the other targets' weights (≥ 1).
    pub weight: u32,
}

/// Shadow traffic: a copy of `percent` of the requests goes to `service`,
/// its responses are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The shadow service.
    pub service: String,
    /// Percent of requests mirrored, `(0, 100]` (default 100).
    #[serde(default = "hundred")]
    pub percent: f64,
}

fn hundred() -> f64 {
    100.0
}

/// What is stripped from the request path before forwarding. YAML:
/// `strip_prefix: true` ([`Route`](Self::Route)), `false`, or a string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StripPrefix {
    /// Nothing.
    #[default]
    None,
    /// The route path's static prefix (`/api/users` for `/api/users/*`).
    Route,
    /// This prefix (a segment-aligned prefix of the route's static prefix).
    Prefix(String),
}

impl<'de> Deserialize<'de> for StripPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Prefix(String),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Bool(false) => StripPrefix::None,
            Repr::Bool(true) => StripPrefix::Route,
            Repr::Prefix(p) => StripPrefix::Prefix(p),
        })
    }
}

impl Serialize for StripPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StripPrefix::None => s.serialize_bool(false),
            StripPrefix::Route => s.serialize_bool(true),
            StripPrefix::Prefix(p) => s.serialize_str(p),
        }
    }
}

/// What a route's rate limit counts per. YAML: `route`, `ip`, `consumer`,
/// or `{header: x-tenant}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum RateLimitBy {
    /// One limit for the whole route.
    #[default]
    Route,
    /// Per client IP (derived through the trusted proxies).
    Ip,
    /// Per value of this request header.
    Header(String),
    /// Per authenticated consumer (needs `auth_required`).
    Consumer,
}

mod methods {
    use http::Method;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(m: &[Method], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(Method::as_str))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Method>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                let upper = n.to_ascii_uppercase();
                Method::from_bytes(upper.as_bytes())
                    .map_err(|_| D::Error::custom(format!("{n:?} is not an HTTP method")))
            })
            .collect()
    }
}
