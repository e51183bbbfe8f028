//! The checks a [`GatewayConfigBuilder`] must pass to become a
//! [`GatewayConfig`](super::GatewayConfig): every problem, not the first.

use super::error::{ConfigProblem, ProblemKind, RouteRef};
use super::{AuthProviderConfig, GatewayConfigBuilder, JwtConfig, RouteConfig, StripPrefix};
use crate::config::RateLimitBy;
use crate::route::pattern::{Pattern, Template};
use http::header::{HeaderName, HeaderValue};
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use crate::route::MAX_PARAMS;
use crate::transform::{self, Direction};

pub(crate) fn validate(b: &GatewayConfigBuilder) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    check_top(b, &mut out);
    let mut seen: HashMap<ConflictKey, Vec<(usize, &[http::Method])>> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, r) in b.routes.iter().enumerate() {
        let at = RouteRef::new(i, &r.path, r.name.as_deref());
        let mut p = |kind, field: &str, msg: String| {
            out.push(ConfigProblem::new(kind, field, msg).route(at.clone()));
        };
        if let Some(name) = &r.name
            && let Some(j) = names.insert(name, i)
        {
            p(
                ProblemKind::Conflict,
                "name",
                format!("route #{j} has the same name {name:?}"),
            );
        }
        check_route(b, r, &mut p);
        if let Ok(pattern) = Pattern::parse(&r.path) {
            let key = ConflictKey::new(r, &pattern);
            let earlier = seen.entry(key).or_default();
            for (j, methods) in earlier.iter() {
                if overlap(methods, &r.methods) {
                    let other = &b.routes[*j];
                    p(
                        ProblemKind::Conflict,
                        "path",
                        format!(
                            "matches the same requests as route #{j} ({}): same path, host and predicates, overlapping methods",
                            other.id()
                        ),
                    );
                    break;
                }
            }
            earlier.push((i, &r.methods));
        }
    }
    out
}

fn overlap(a: &[http::Method], b: &[http::Method]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ConflictKey {
    host: Option<String>,
    headers: BTreeSet<(String, String)>,
    query: BTreeSet<(String, String)>,
    shape: String,
}

impl ConflictKey {
    fn new(r: &RouteConfig, pattern: &Pattern) -> Self {
        ConflictKey {
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            query: r
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            shape: pattern.matchit_path(),
        }
    }
}

fn check_route(
    b: &GatewayConfigBuilder,
    r: &RouteConfig,
    p: &mut impl FnMut(ProblemKind, &str, String),
) {
    let pattern = match Pattern::parse(&r.path) {
        Ok(pattern) => {
            if pattern.param_names().count() > MAX_PARAMS {
                p(
                    ProblemKind::Invalid,
                    "path",
                    format!("at most {MAX_PARAMS} parameters per path"),
                );
            }
            Some(pattern)
        }
        Err(e) => {
            p(ProblemKind::Invalid, "path", e);
            None
        }
    };

    // Where requests go.
    let known = |s: &str| b.services.contains_key(s) || b.registry.discovers_unlisted();
    let listed = || {
        let names: Vec<&str> = b.services.keys().map(String::as_str).collect();
        if names.is_empty() {
            "no services are configured".to_owned()
        } else {
            format!("services: {}", names.join(", "))
        }
    };
    match (&r.service, r.split.is_empty()) {
        (Some(_), false) => p(
            ProblemKind::Invalid,
            "split",
            "a route has `service` or `split`, not both".to_owned(),
        ),
        (None, true) => p(
            ProblemKind::Invalid,
            "service",
            "a route needs `service` (or a weighted `split`)".to_owned(),
        ),
        _ => {}
    }
    if let Some(s) = &r.service
        && !known(s)
    {
        p(
            ProblemKind::UnknownService,
            "service",
            format!("unknown service {s:?} ({})", listed()),
        );
    }
    for (j, t) in r.split.iter().enumerate() {
        if !known(&t.service) {
            p(
                ProblemKind::UnknownService,
                &format!("split[{j}].service"),
                format!("unknown service {:?} ({})", t.service, listed()),
            );
        }
        if t.weight == 0 {
            p(
                ProblemKind::Invalid,
                &format!("split[{j}].weight"),
                "a split weight must be at least 1".to_owned(),
            );
        }
    }
    if let Some(m) = &r.mirror {
        if !known(&m.service) {
            p(
                ProblemKind::UnknownService,
                "mirror.service",
                format!("unknown service {:?} ({})", m.service, listed()),
            );
        }
        if !(m.percent > 0.0 && m.percent <= 100.0) {
            p(
                ProblemKind::Invalid,
                "mirror.percent",
                format!("must be in (0, 100], got {}", m.percent),
            );
        }
    }

    // Predicates.
    if let Some(host) = &r.host {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        let ok = !bare.is_empty()
            && bare
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
        if !ok {
            p(
                ProblemKind::Invalid,
                "host",
                format!(
                    "{host:?} is not a host name (`api.example.com` or `*.example.com`, no port)"
                ),
            );
        }
    }
    for (name, value) in &r.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            p(
                ProblemKind::Invalid,
                &format!("headers.{name}"),
                format!("{name:?} is not a header name"),
            );
        }
        if HeaderValue::from_str(value).is_err() {
            p(
                ProblemKind::Invalid,
                &format!("headers.{name}"),
                format!("{value:?} is not a valid header value"),
            );
        }
    }
    if r.query.keys().any(String::is_empty) {
        p(
            ProblemKind::Invalid,
            "query",
            "a query predicate needs a parameter name".to_owned(),
        );
    }

    // Path rewriting.
    if let Some(pattern) = &pattern {
        if r.rewrite.is_some() && r.strip_prefix != StripPrefix::None {
            p(
                ProblemKind::Invalid,
                "rewrite",
                "use `rewrite` or `strip_prefix`, not both".to_owned(),
            );
        }
        let prefix = pattern.static_prefix();
        match &r.strip_prefix {
            StripPrefix::None => {}
            StripPrefix::Route if prefix.is_empty() || prefix == "/" => p(
                ProblemKind::Invalid,
                "strip_prefix",
                "the path has no static prefix to strip".to_owned(),
            ),
            StripPrefix::Route => {}
            StripPrefix::Prefix(s) => {
                let aligned = s.starts_with('/')
                    && !s.ends_with('/')
                    && (prefix == *s || prefix.starts_with(&format!("{s}/")));
                if !aligned {
                    p(
                        ProblemKind::Invalid,
                        "strip_prefix",
                        format!(
                            "{s:?} is not a whole-segment prefix of the path's static prefix {prefix:?}"
                        ),
                    );
                }
            }
        }
        if let Some(t) = &r.rewrite
            && let Err(e) = Template::parse(t, pattern)
        {
            p(ProblemKind::Invalid, "rewrite", e);
        }
    }

    // Auth.
    let has_default = b.auth.default_provider_name().is_some();
    if r.auth_required && r.auth.is_empty() && !has_default {
        p(
            ProblemKind::Auth,
            "auth_required",
            "auth is required but no auth provider is configured (add one under `auth.providers`, name it in `auth`, or set `auth.default_provider`)".to_owned(),
        );
    }
    if !r.auth.is_empty() && !r.auth_required {
        p(
            ProblemKind::Auth,
            "auth",
            "providers are named but `auth_required` is false; set it to true".to_owned(),
        );
    }
    for (j, name) in r.auth.iter().enumerate() {
        if !b.auth.providers.contains_key(name) {
            p(
                ProblemKind::Auth,
                &format!("auth[{j}]"),
                format!("unknown auth provider {name:?}"),
            );
        }
    }

    // Limits and upstream settings.
    match &r.rate_limit_by {
        RateLimitBy::Route => {}
        by if r.rate_limit.is_none() => p(
            ProblemKind::Invalid,
            "rate_limit_by",
            format!("`rate_limit_by: {by:?}` without a `rate_limit`"),
        ),
        RateLimitBy::Header(name) if HeaderName::from_bytes(name.as_bytes()).is_err() => p(
            ProblemKind::Invalid,
            "rate_limit_by",
            format!("{name:?} is not a header name"),
        ),
        RateLimitBy::Consumer if !r.auth_required => p(
            ProblemKind::Auth,
            "rate_limit_by",
            "`rate_limit_by: consumer` needs `auth_required: true`".to_owned(),
        ),
        _ => {}
    }
    // Transforms.
    let ids = &b.auth.identity_headers;
    let mut q = |field: String, msg: String| p(ProblemKind::Invalid, &field, msg);
    transform::check_headers(
        "request_headers",
        &r.request_headers,
        Direction::Request,
        ids,
        &mut q,
    );
    transform::check_headers(
        "response_headers",
        &r.response_headers,
        Direction::Response,
        ids,
        &mut q,
    );
    if let Some(json) = &r.response_json {
        transform::check_json(json, &mut q);
    }
    if r.timeout.is_some_and(|t| t.is_zero()) {
        p(
            ProblemKind::Invalid,
            "timeout",
            "a timeout must be longer than zero".to_owned(),
        );
    }
}

fn check_top(b: &GatewayConfigBuilder, out: &mut Vec<ConfigProblem>) {
    let mut p = |kind, field: String, msg: String| out.push(ConfigProblem::new(kind, field, msg));
    if let Some(admin) = &b.admin
        && admin.listen == b.listen
        && admin.listen.port() != 0
    {
        p(
            ProblemKind::Invalid,
            "admin.listen".to_owned(),
            "the admin listener needs its own address".to_owned(),
        );
    }
    if let super::RegistryConfig::Etcd { endpoints, .. } = &b.registry
        && endpoints.is_empty()
    {
        p(
            ProblemKind::Invalid,
            "registry.etcd.endpoints".to_owned(),
            "at least one etcd endpoint".to_owned(),
        );
    }
    if let super::RateLimitStoreConfig::Redis(r) = &b.rate_limit_store {
        if r.url.is_empty() {
            p(
                ProblemKind::Invalid,
                "rate_limit_store.redis.url".to_owned(),
                "a Redis URL (`redis://127.0.0.1:6379`)".to_owned(),
            );
        }
        if r.prefix.is_empty() {
            p(
                ProblemKind::Invalid,
                "rate_limit_store.redis.prefix".to_owned(),
                "an empty key prefix".to_owned(),
            );
        }
        if r.timeout.is_zero() {
            p(
                ProblemKind::Invalid,
                "rate_limit_store.redis.timeout".to_owned(),
                "must be longer than zero".to_owned(),
            );
        }
    }
    let dns_registry = matches!(b.registry, super::RegistryConfig::Dns(_));
    if let super::RegistryConfig::Dns(d) = &b.registry
        && (d.min_refresh.is_zero() || d.max_refresh < d.min_refresh)
    {
        p(
            ProblemKind::Invalid,
            "registry.dns".to_owned(),
            "`min_refresh` must be longer than zero and at most `max_refresh`".to_owned(),
        );
    }
    for (name, s) in &b.services {
        match (&s.dns, dns_registry) {
            (None, true) => p(
                ProblemKind::Invalid,
                format!("services.{name}"),
                "`registry: dns` needs the service's DNS name: `dns: _http._tcp.<service>.<namespace>.svc.cluster.local` (SRV) or `dns: host:port`".to_owned(),
            ),
            (Some(_), false) => p(
                ProblemKind::Invalid,
                format!("services.{name}.dns"),
                "`dns` is only used with `registry: dns`".to_owned(),
            ),
            (Some(d), true) => {
                if let Err(e) = super::DnsName::parse(d) {
                    p(ProblemKind::Invalid, format!("services.{name}.dns"), e);
                }
            }
            (None, false) => {}
        }
        let e = s.with_defaults(&b.service_defaults);
        let prefix = format!("services.{name}");
        check_settings(
            &prefix,
            s.own_health_check()
                .then_some(s.health_check.as_ref())
                .flatten(),
            s.own_connect_timeout().then_some(s.connect_timeout),
            None,
            &mut p,
        );
        // An inherited per-try timeout against the service's own connect
        // timeout (or the other way round); both inherited: the defaults'
        // check below reports it once.
        if let Some(per_try) = e.retry.as_ref().and_then(|r| r.per_try_timeout())
            && per_try <= e.connect_timeout
            && (s.own_retry() || s.own_connect_timeout())
        {
            let (field, retry_from) = if s.own_retry() {
                ("retry.per_try_timeout", "")
            } else {
                ("connect_timeout", " (`retry` from `service_defaults`)")
            };
            p(
                ProblemKind::Invalid,
                format!("{prefix}.{field}"),
                format!(
                    "{per_try:?}{retry_from} is not longer than the service's connect_timeout ({:?}): an attempt to an unreachable instance would time out before its connect failure could be retried",
                    e.connect_timeout
                ),
            );
        }
    }
    let d = &b.service_defaults;
    check_settings(
        "service_defaults",
        d.health_check.as_ref(),
        d.connect_timeout,
        d.retry.as_ref().map(|r| {
            (
                r,
                d.connect_timeout
                    .unwrap_or(super::ServiceConfig::default().connect_timeout),
            )
        }),
        &mut p,
    );
    if b.limits.max_body_bytes == 0 || b.limits.max_header_bytes == 0 || b.limits.max_uri_len == 0 {
        p(
            ProblemKind::Invalid,
            "limits".to_owned(),
            "limits must be at least 1".to_owned(),
        );
    }
    if let Some(d) = &b.auth.default_provider
        && !b.auth.providers.contains_key(d)
    {
        p(
            ProblemKind::Auth,
            "auth.default_provider".to_owned(),
            format!("unknown auth provider {d:?}"),
        );
    }
    check_auth(b, &mut p);
}

/// A service's or `service_defaults`' own health check, connect timeout,
/// and retry against the connect timeout it will run with.
fn check_settings(
    prefix: &str,
    health_check: Option<&super::HealthCheckConfig>,
    connect_timeout: Option<Duration>,
    retry: Option<(&msp_resilience::retry::RetryConfig, Duration)>,
    p: &mut impl FnMut(ProblemKind, String, String),
) {
    if let Some(h) = health_check {
        if h.interval.is_zero() || h.timeout.is_zero() {
            p(
                ProblemKind::Invalid,
                format!("{prefix}.health_check"),
                "interval and timeout must be longer than zero".to_owned(),
            );
        }
        if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
            p(
                ProblemKind::Invalid,
                format!("{prefix}.health_check"),
                "thresholds must be at least 1".to_owned(),
            );
        }
    }
    if connect_timeout.is_some_and(|t| t.is_zero()) {
        p(
            ProblemKind::Invalid,
            format!("{prefix}.connect_timeout"),
            "must be longer than zero".to_owned(),
        );
    }
    if let Some((retry, connect)) = retry
        && let Some(per_try) = retry.per_try_timeout()
        && per_try <= connect
    {
        p(
            ProblemKind::Invalid,
            format!("{prefix}.retry.per_try_timeout"),
            format!(
                "{per_try:?} is not longer than the connect_timeout ({connect:?}): an attempt to an unreachable instance would time out before its connect failure could be retried"
            ),
        );
    }
}

fn check_auth(b: &GatewayConfigBuilder, p: &mut impl FnMut(ProblemKind, String, String)) {
    let ids = &b.auth.identity_headers;
    for (field, value) in [
        ("consumer", &ids.consumer),
        ("subject", &ids.subject),
        ("provider", &ids.provider),
    ] {
        if HeaderName::from_bytes(value.as_bytes()).is_err() {
            p(
                ProblemKind::Invalid,
                format!("auth.identity_headers.{field}"),
                format!("{value:?} is not a header name"),
            );
        }
    }
    let prefix = &ids.claim_prefix;
    if prefix.is_empty() || HeaderName::from_bytes(format!("{prefix}x").as_bytes()).is_err() {
        p(
            ProblemKind::Invalid,
            "auth.identity_headers.claim_prefix".to_owned(),
            format!("{prefix:?} is not a header-name prefix"),
        );
    }
    for (name, provider) in &b.auth.providers {
        match provider {
            AuthProviderConfig::Jwt(j) => check_jwt(name, j, p),
            AuthProviderConfig::ApiKey(k) => {
                let base = format!("auth.providers.{name}.api_key");
                if HeaderName::from_bytes(k.header.as_bytes()).is_err() {
                    p(
                        ProblemKind::Invalid,
                        format!("{base}.header"),
                        format!("{:?} is not a header name", k.header),
                    );
                }
                if k.query.as_deref() == Some("") {
                    p(
                        ProblemKind::Invalid,
                        format!("{base}.query"),
                        "an empty query parameter name".to_owned(),
                    );
                }
                let mut names = HashMap::new();
                let mut digests = HashMap::new();
                for (j, c) in k.consumers.iter().enumerate() {
                    if c.name.is_empty() {
                        p(
                            ProblemKind::Invalid,
                            format!("{base}.consumers[{j}].name"),
                            "a consumer needs a name".to_owned(),
                        );
                    } else if let Some(prev) = names.insert(c.name.as_str(), j) {
                        p(
                            ProblemKind::Conflict,
                            format!("{base}.consumers[{j}].name"),
                            format!("consumer #{prev} has the same name {:?}", c.name),
                        );
                    }
                    match crate::auth::parse_digest(&c.key_sha256) {
                        None => p(
                            ProblemKind::Invalid,
                            format!("{base}.consumers[{j}].key_sha256"),
                            "must be the SHA-256 of the key as 64 hex digits (never the key itself; see the hash_api_key example)".to_owned(),
                        ),
                        Some(d) => {
                            if let Some(prev) = digests.insert(d, j) {
                                p(
                                    ProblemKind::Conflict,
                                    format!("{base}.consumers[{j}].key_sha256"),
                                    format!("consumer #{prev} has the same key"),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_jwt(name: &str, j: &JwtConfig, p: &mut impl FnMut(ProblemKind, String, String)) {
    let base = format!("auth.providers.{name}.jwt");
    let mut hmac = None;
    if j.algorithms.is_empty() {
        p(
            ProblemKind::Invalid,
            format!("{base}.algorithms"),
            "pin at least one algorithm (RS256, ES256, EdDSA, …)".to_owned(),
        );
    }
    for (i, a) in j.algorithms.iter().enumerate() {
        match jsonwebtoken::Algorithm::from_str(a) {
            Err(_) => p(
                ProblemKind::Invalid,
                format!("{base}.algorithms[{i}]"),
                format!(
                    "unknown algorithm {a:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"
                ),
            ),
            Ok(alg) => {
                let is_hmac = alg.family() == jsonwebtoken::AlgorithmFamily::Hmac;
                match hmac {
                    None => hmac = Some(is_hmac),
                    Some(h) if h != is_hmac => p(
                        ProblemKind::Invalid,
                        format!("{base}.algorithms[{i}]"),
                        "HMAC (HS*) and public-key algorithms cannot share a provider (that is how HS/RS key confusion happens)".to_owned(),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    let secret = j.secret_base64.is_some() || j.secret_env.is_some();
    if j.secret_base64.is_some() && j.secret_env.is_some() {
        p(
            ProblemKind::Invalid,
            format!("{base}.secret_env"),
            "`secret_base64` or `secret_env`, not both".to_owned(),
        );
    }
    if let Some(var) = &j.secret_env
        && var.is_empty()
    {
        p(
            ProblemKind::Invalid,
            format!("{base}.secret_env"),
            "an empty environment variable name".to_owned(),
        );
    }
    match hmac {
        Some(true) if !secret => p(
            ProblemKind::Invalid,
            format!("{base}.secret_base64"),
            "HMAC algorithms need `secret_base64` or `secret_env`".to_owned(),
        ),
        Some(true) if j.jwks.is_some() => p(
            ProblemKind::Invalid,
            format!("{base}.jwks"),
            "HMAC algorithms take a secret, not `jwks`".to_owned(),
        ),
        Some(false) if secret => p(
            ProblemKind::Invalid,
            format!("{base}.secret_base64"),
            "a secret is only used with HMAC (HS*) algorithms".to_owned(),
        ),
        Some(false) if j.jwks.is_none() => p(
            ProblemKind::Invalid,
            format!("{base}.jwks"),
            "public-key algorithms need a key source: `jwks: {url: …}` or `jwks: {file: …}`"
                .to_owned(),
        ),
        _ => {}
    }
    if let Some(jwks) = &j.jwks {
        match (&jwks.url, &jwks.file) {
            (Some(_), Some(_)) | (None, None) => p(
                ProblemKind::Invalid,
                format!("{base}.jwks"),
                "exactly one of `url` and `file`".to_owned(),
            ),
            (Some(url), None) => {
                if let Err(e) = crate::auth::jwks_uri(name, url) {
                    p(
                        ProblemKind::Invalid,
                        format!("{base}.jwks.url"),
                        e.to_string(),
                    );
                }
            }
            (None, Some(_)) => {}
        }
        if jwks.min_refresh < Duration::from_secs(1) || jwks.max_refresh < jwks.min_refresh {
            p(
                ProblemKind::Invalid,
                format!("{base}.jwks.min_refresh"),
                "`min_refresh` must be at least 1s and at most `max_refresh`".to_owned(),
            );
        }
        if jwks.timeout.is_zero() {
            p(
                ProblemKind::Invalid,
                format!("{base}.jwks.timeout"),
                "must be longer than zero".to_owned(),
            );
        }
    }
    if HeaderName::from_bytes(j.header.as_bytes()).is_err() {
        p(
            ProblemKind::Invalid,
            format!("{base}.header"),
            format!("{:?} is not a header name", j.header),
        );
    }
    for (i, claim) in j.forward_claims.iter().enumerate() {
        if HeaderName::from_bytes(format!("x-{}", claim.to_ascii_lowercase()).as_bytes()).is_err() {
            p(
                ProblemKind::Invalid,
                format!("{base}.forward_claims[{i}]"),
                format!("{claim:?} cannot be part of a header name"),
            );
        }
    }
    for (field, list) in [
        ("required_claims", &j.required_claims),
        ("required_scopes", &j.required_scopes),
        ("forward_claims", &j.forward_claims),
        ("audience", &j.audience),
    ] {
        if let Some(i) = list.iter().position(|c| c.trim().is_empty()) {
            p(
                ProblemKind::Invalid,
                format!("{base}.{field}[{i}]"),
                "an empty name".to_owned(),
            );
        }
    }
}
