//! Per-route rate limits: one limit for the route, or one per client IP,
//! header value or consumer (msp-resilience's GCRA limiters), counted in
//! this process or (feature `redis`, `rate_limit_store: {redis: …}`) in
//! Redis, shared by every gateway with the same key prefix.

use super::error::BuildError;
use crate::config::{RateLimitBy, RateLimitStoreConfig};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use msp_core::http::Problem;
use msp_core::time::ceil_secs;
use msp_resilience::Quota;
use msp_resilience::RateLimited;
use msp_resilience::rate_limit::{Admitted, KeyedRateLimiter, RateLimiter};
use std::fmt;
use std::net::IpAddr;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What a request is counted by.
#[derive(Debug)]
pub(crate) struct ClientKey<'a> {
    pub(crate) ip: IpAddr,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) consumer: Option<&'a str>,
}

/// One route's limiter; clones of a snapshot share it, and a reload keeps
/// it when the route's quota and key are unchanged.
#[derive(Clone)]
pub(crate) enum RouteLimiter {
    Route(RateLimiter),
    Ip(KeyedRateLimiter<IpAddr>),
    Header(HeaderName, KeyedRateLimiter<HeaderValue>),
    Consumer(KeyedRateLimiter<String>),
    /// Counts in Redis: `{prefix}:{route}:{client}`.
    #[cfg(feature = "redis")]
    Redis(RedisBy, msp_resilience::rate_limit::RedisRateLimiter),
}

/// What a Redis limit counts per.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) enum RedisBy {
    Route,
    Ip,
    Header(HeaderName),
    Consumer,
}

#[cfg(feature = "redis")]
fn redis_limiter(
    quota: Quota,
    by: &RateLimitBy,
    store: &crate::config::RedisStoreConfig,
    route: &str,
) -> Result<RouteLimiter, BuildError> {
    use crate::config::OnStoreError;
    use msp_resilience::rate_limit::{OnRedisError, RedisRateLimitConfig, RedisRateLimiter};
    let by = match by {
        RateLimitBy::Route => RedisBy::Route,
        RateLimitBy::Ip => RedisBy::Ip,
        RateLimitBy::Header(name) => RedisBy::Header(
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| BuildError::invalid(format!("route {route}"), e))?,
        ),
        RateLimitBy::Consumer => RedisBy::Consumer,
        #[allow(unreachable_patterns)]
        _ => {
            return Err(BuildError::invalid(
                format!("route {route}"),
                "this rate_limit_by is not supported with Redis",
            ));
        }
    };
    let mut cfg = RedisRateLimitConfig::new(store.url.clone(), quota);
    cfg.prefix = format!("{}:{route}", store.prefix);
    cfg.timeout = store.timeout;
    cfg.on_error = match store.on_error {
        OnStoreError::FailOpen => OnRedisError::FailOpen,
        OnStoreError::FailClosed => OnRedisError::FailClosed,
        _ => OnRedisError::Local,
    };
    let limiter =
        RedisRateLimiter::new(cfg).map_err(|e| BuildError::invalid(format!("route {route}"), e))?;
    Ok(RouteLimiter::Redis(by, limiter))
}

impl fmt::Debug for RouteLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())?;
        write!(f, "({})", self.quota())
    }
}

impl RouteLimiter {
    pub(crate) fn new(
        quota: Quota,
        by: &RateLimitBy,
        store: &RateLimitStoreConfig,
        route: &str,
    ) -> Result<Self, BuildError> {
        match store {
            RateLimitStoreConfig::Local => {}
            #[cfg(feature = "redis")]
            RateLimitStoreConfig::Redis(redis) => return redis_limiter(quota, by, redis, route),
            #[cfg(not(feature = "redis"))]
            RateLimitStoreConfig::Redis(_) => {
                return Err(BuildError::invalid(
                    "rate_limit_store",
                    "`rate_limit_store: redis` needs msp-gateway built with the `redis` feature",
                ));
            }
        }
        Ok(match by {
            RateLimitBy::Route => RouteLimiter::Route(RateLimiter::new(quota)),
            RateLimitBy::Ip => RouteLimiter::Ip(KeyedRateLimiter::new(quota)),
            RateLimitBy::Header(name) => RouteLimiter::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| BuildError::invalid(format!("route {route}"), e))?,
                KeyedRateLimiter::new(quota),
            ),
            RateLimitBy::Consumer => RouteLimiter::Consumer(KeyedRateLimiter::new(quota)),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(BuildError::invalid(
                    format!("route {route}"),
                    "unsupported rate_limit_by",
                ));
            }
        })
    }

    /// `local` or `redis`.
    pub(crate) fn store(&self) -> &'static str {
        match self {
            #[cfg(feature = "redis")]
            RouteLimiter::Redis(..) => "redis",
            _ => "local",
        }
    }

    /// `route`, `ip`, `header` or `consumer`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RouteLimiter::Route(_) => "route",
            RouteLimiter::Ip(_) => "ip",
            RouteLimiter::Header(..) => "header",
            RouteLimiter::Consumer(_) => "consumer",
            #[cfg(feature = "redis")]
            RouteLimiter::Redis(by, _) => match by {
                RedisBy::Route => "route",
                RedisBy::Ip => "ip",
                RedisBy::Header(_) => "header",
                RedisBy::Consumer => "consumer",
            },
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        match self {
            RouteLimiter::Route(l) => l.quota(),
            RouteLimiter::Ip(l) => l.quota(),
            RouteLimiter::Header(_, l) => l.quota(),
            RouteLimiter::Consumer(l) => l.quota(),
            #[cfg(feature = "redis")]
            RouteLimiter::Redis(_, l) => l.quota(),
        }
    }

    /// How many client keys are tracked in this process (1 for a route
    /// limit; 0 for Redis, which keeps them).
    pub(crate) fn keys(&self) -> usize {
        match self {
            RouteLimiter::Route(_) => 1,
            RouteLimiter::Ip(l) => l.len(),
            RouteLimiter::Header(_, l) => l.len(),
            RouteLimiter::Consumer(l) => l.len(),
            #[cfg(feature = "redis")]
            RouteLimiter::Redis(..) => 0,
        }
    }

    pub(crate) fn needs_consumer(&self) -> bool {
        match self {
            RouteLimiter::Consumer(_) => true,
            #[cfg(feature = "redis")]
            RouteLimiter::Redis(RedisBy::Consumer, _) => true,
            _ => false,
        }
    }

    /// Counts one request (in Redis: one script call, bounded by the
    /// store's timeout).
    pub(crate) async fn check(&self, key: &ClientKey<'_>) -> Result<Admitted, RateLimited> {
        match self {
            #[cfg(feature = "redis")]
            RouteLimiter::Redis(by, l) => {
                let k = match by {
                    RedisBy::Route => "route".to_owned(),
                    RedisBy::Ip => format!("ip:{}", key.ip),
                    RedisBy::Header(name) => match key.headers.get(name) {
                        Some(v) => format!("h:{}", String::from_utf8_lossy(v.as_bytes())),
                        None => "h~none".to_owned(),
                    },
                    RedisBy::Consumer => match key.consumer {
                        Some(c) => format!("c:{c}"),
                        None => "c~none".to_owned(),
                    },
                };
                l.check(&k).await
            }
            RouteLimiter::Route(l) => l.check(),
            RouteLimiter::Ip(l) => l.check(&key.ip),
            RouteLimiter::Header(name, l) => match key.headers.get(name) {
                Some(v) => l.check(v),
                // No key: one shared bucket for everyone without one.
                None => l.check_unkeyed(),
            },
            RouteLimiter::Consumer(l) => match key.consumer {
                Some(c) => l.check(&c.to_owned()),
                None => l.check_unkeyed(),
            },
        }
    }
}

/// Adds the `RateLimit-*` headers of an admitted request.
pub(crate) fn admitted_headers(headers: &mut HeaderMap, admitted: &Admitted) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(admitted.limit()));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(admitted.remaining()));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(ceil_secs(admitted.reset())),
    );
}

/// The `429` problem for a refused request, with `Retry-After` and the
/// `RateLimit-*` headers.
pub(crate) fn too_many(
    route: &str,
    refused: &RateLimited,
) -> Response<http_body_util::Full<bytes::Bytes>> {
    let mut res = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("rate limit of route {route} exceeded"),
    )
    .with_retry_after(Some(refused.retry_after()))
    .into_full_response();
    let headers = res.headers_mut();
    if !headers.contains_key(RETRY_AFTER) {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(ceil_secs(refused.retry_after()).max(1)),
        );
    }
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(refused.limit()));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(0u32));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(ceil_secs(refused.reset()).max(1)),
    );
    res
}
