//! Per-route rate limits: one limit for the route, or one per client IP,
//! header value or consumer (msp-resilience's GCRA limiters).

use crate::config::RateLimitBy;
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
}

impl fmt::Debug for RouteLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())?;
        write!(f, "({})", self.quota())
    }
}

impl RouteLimiter {
    pub(crate) fn new(quota: Quota, by: &RateLimitBy) -> Option<Self> {
        Some(match by {
            RateLimitBy::Route => RouteLimiter::Route(RateLimiter::new(quota)),
            RateLimitBy::Ip => RouteLimiter::Ip(KeyedRateLimiter::new(quota)),
            RateLimitBy::Header(name) => RouteLimiter::Header(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                KeyedRateLimiter::new(quota),
            ),
            RateLimitBy::Consumer => RouteLimiter::Consumer(KeyedRateLimiter::new(quota)),
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    /// `route`, `ip`, `header` or `consumer`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RouteLimiter::Route(_) => "route",
            RouteLimiter::Ip(_) => "ip",
            RouteLimiter::Header(..) => "header",
            RouteLimiter::Consumer(_) => "consumer",
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        match self {
            RouteLimiter::Route(l) => l.quota(),
            RouteLimiter::Ip(l) => l.quota(),
            RouteLimiter::Header(_, l) => l.quota(),
            RouteLimiter::Consumer(l) => l.quota(),
        }
    }

    /// How many client keys are tracked (1 for a route limit).
    pub(crate) fn keys(&self) -> usize {
        match self {
            RouteLimiter::Route(_) => 1,
            RouteLimiter::Ip(l) => l.len(),
            RouteLimiter::Header(_, l) => l.len(),
            RouteLimiter::Consumer(l) => l.len(),
        }
    }

    pub(crate) fn needs_consumer(&self) -> bool {
        matches!(self, RouteLimiter::Consumer(_))
    }

    /// Counts one request.
    pub(crate) fn check(&self, key: &ClientKey<'_>) -> Result<Admitted, RateLimited> {
        match self {
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
