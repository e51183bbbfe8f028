//! One rate limit across many processes, kept in Redis (feature `redis`).
//!
//! Each check runs one Lua script in Redis: GCRA on a key holding the
//! theoretical arrival time, with Redis's own `TIME` as the clock (so the
//! processes' clocks do not matter), atomically. When Redis cannot be
//! reached within the timeout, [`OnRedisError`] decides: admit
//! (`fail_open`), reject (`fail_closed`), or enforce the quota locally in
//! each process (`local`, the default).
//!
//! # When Redis fails
//!
//! What each fault does (each is tested against a real `redis-server` in
//! `tests/rate_limit_redis_faults.rs`):
//!
//! - **Down or killed.** A check that reaches for Redis fails at once
//!   (connection refused or reset) or at the timeout, and [`OnRedisError`]
//!   answers. Redis is then not tried again for `recheck`: under load, each
//!   concurrent caller makes at most one failing round trip per recheck
//!   interval, and the other checks fall back at once.
//! - **Slower than the timeout** (stalled, overloaded). A check gives up
//!   after `timeout` and falls back. Its script may already be in Redis's
//!   input buffer: when Redis resumes it still runs, so such a request can
//!   count against the quota although the fallback answered it (with
//!   `fail_closed`, a rejected request may have used quota). The error is
//!   on the safe side: never more admitted than the quota. A check is never
//!   retried after a timeout, so it counts at most once.
//! - **Back.** The first check after the recheck interval tries Redis
//!   again. If the connection died meanwhile, that same check waits for a
//!   new one (one more try, within the same timeout), so degraded mode ends
//!   at that check, not one interval later.
//! - **Restarted with its state wiped** (no persistence, or a fail-over to
//!   an empty replica). The limiter keeps no copy of the counts: every key
//!   starts afresh, so each may use a whole burst again (at most one extra
//!   burst per key per wipe). Run Redis with persistence or replication if
//!   that matters. The script, wiped too, is loaded again by itself.

use super::error::RateLimited;
use super::gcra::{Admitted, SharedParams};
use super::key::KeyExtractor;
use super::service::{admitted_headers, too_many_requests};
use super::{KeyedRateLimiter, Quota};
use http::{HeaderValue, Request, Response};
use msp_core::BoxError;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// GCRA in Redis. KEYS[1]: the key. ARGV[1]: emission interval (µs).
/// ARGV[2]: tolerance, burst × interval (µs). Returns {admitted (1/0),
/// slack or retry-after (µs), reset (µs)}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = now + tolerance
if new_tat > allow_at then
  return {0, new_tat - allow_at, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, allow_at - new_tat, new_tat - now}
"#;

/// What to do when Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Admit the request.
    FailOpen,
    /// Reject the request (with a `retry_after` of one second).
    FailClosed,
    /// Enforce the quota in this process alone until Redis is back (with N
    /// processes, up to N × the quota pass in total).
    #[default]
    Local,
}

fn default_prefix() -> String {
    "msp:ratelimit".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}

fn default_recheck() -> Duration {
    Duration::from_secs(1)
}

/// Settings of a [`RedisRateLimiter`].
///
/// ```
/// use msp_resilience::rate_limit::RedisRateLimitConfig;
/// let c: RedisRateLimitConfig = serde_json::from_str(r#"{
///     "url": "redis://127.0.0.1:6379",
///     "prefix": "shop:api",
///     "quota": "1000/hour",
///     "on_error": "fail_open",
///     "timeout": "100ms"
/// }"#)?;
/// assert_eq!(c.quota.limit(), 1000);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisRateLimitConfig {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prefix of the Redis keys (default `msp:ratelimit`); processes sharing
    /// a limit use the same prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The quota per key.
    pub quota: Quota,
    /// What to do when Redis does not answer (default `local`).
    #[serde(default)]
    pub on_error: OnRedisError,
    /// How long a check may wait for Redis, connecting included (default
    /// 250 ms).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// After Redis failed, checks skip it (and fall back at once) for this
    /// long before trying it again (default 1 s), so an outage adds no
    /// latency to every request.
    #[serde(default = "default_recheck", with = "humantime_serde")]
    pub recheck: Duration,
}

impl RedisRateLimitConfig {
    /// Settings with the defaults for everything but the URL and quota.
    pub fn new(url: impl Into<String>, quota: Quota) -> Self {
        RedisRateLimitConfig {
            url: url.into(),
            prefix: default_prefix(),
            quota,
            on_error: OnRedisError::default(),
            timeout: default_timeout(),
            recheck: default_recheck(),
        }
    }
}

/// The Redis limiter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Redis rate limiter for {url}: {source}")]
pub struct RedisSetupError {
    url: String,
    #[source]
    source: redis::RedisError,
}

/// A rate limit per key shared by every process using the same Redis and
/// prefix.
///
/// The connection is made lazily and re-made in the background by redis's
/// `ConnectionManager`; a check never waits longer than the configured
/// timeout.
///
/// # Example
///
/// ```no_run
/// use msp_resilience::rate_limit::{OnRedisError, RedisRateLimitConfig, RedisRateLimiter};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = RedisRateLimitConfig::new("redis://127.0.0.1:6379", "100/min".parse()?);
/// config.on_error = OnRedisError::Local;
/// let limiter = RedisRateLimiter::new(config)?;
/// match limiter.check("client-42").await {
///     Ok(admitted) => println!("{} left", admitted.remaining()),
///     Err(limited) => println!("retry in {:?}", limited.retry_after()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    params: SharedParams,
    on_error: OnRedisError,
    timeout: Duration,
    local: KeyedRateLimiter<String>,
    degraded: AtomicBool,
    recheck: Duration,
    /// Nanoseconds since `base` before which Redis is not tried again.
    skip_until: AtomicU64,
    base: Instant,
    errors: metrics::Counter,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.inner.prefix)
            .field("quota", &self.quota())
            .field("on_error", &self.inner.on_error)
            .field("degraded", &self.is_degraded())
            .finish()
    }
}

impl RedisRateLimiter {
    /// A limiter with `config`. Must be called inside a Tokio runtime; does
    /// not connect yet (a Redis that is down is not an error here).
    pub fn new(config: RedisRateLimitConfig) -> Result<Self, RedisSetupError> {
        let setup = |source| RedisSetupError {
            url: config.url.clone(),
            source,
        };
        let client = redis::Client::open(config.url.as_str()).map_err(setup)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, manager).map_err(setup)?;
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                conn,
                script: Script::new(GCRA),
                errors: metrics::counter!("msp_rate_limit_redis_errors_total", "prefix" => config.prefix.clone()),
                prefix: config.prefix,
                params: SharedParams::new(config.quota),
                on_error: config.on_error,
                timeout: config.timeout,
                local: KeyedRateLimiter::new(config.quota),
                degraded: AtomicBool::new(false),
                recheck: config.recheck,
                skip_until: AtomicU64::new(0),
                base: Instant::now(),
            }),
        })
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.inner.params.quota()
    }

    /// Replaces the quota (for this process; give every process the same).
    /// Keys' state in Redis carries over as time.
    pub fn set_quota(&self, quota: Quota) {
        self.inner.params.store(quota);
        self.inner.local.set_quota(quota);
    }

    /// Whether the last check could not reach Redis.
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Admits one request of `key` or says when to retry.
    pub async fn check(&self, key: &str) -> Result<Admitted, RateLimited> {
        let inner = &*self.inner;
        let p = inner.params.load();
        if inner.now() < inner.skip_until.load(Ordering::Relaxed) {
            return inner.fallback(key, p.burst);
        }
        let interval = (p.t / 1_000).max(1);
        let tolerance = interval.saturating_mul(u64::from(p.burst));
        let mut conn = inner.conn.clone();
        let mut invocation = inner.script.prepare_invoke();
        invocation
            .key(format!("{}:{}", inner.prefix, key))
            .arg(interval)
            .arg(tolerance);
        let answer = tokio::time::timeout(inner.timeout, async {
            match invocation.invoke_async::<Vec<i64>>(&mut conn).await {
                // The connection was dead (Redis restarted, or is back after
                // an outage): the manager has begun a new one, which this
                // second try waits for, within the same timeout. Not after a
                // timeout: that script may still run, and would count twice.
                Err(e) if !e.is_timeout() && (e.is_io_error() || e.is_unrecoverable_error()) => {
                    invocation.invoke_async::<Vec<i64>>(&mut conn).await
                }
                other => other,
            }
        })
        .await;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        let error = match answer {
            Ok(Ok(v)) if v.len() == 3 => {
                if inner.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(prefix = %inner.prefix, "Redis rate limiter reachable again");
                }
                let remaining = u64::try_from(v[1]).unwrap_or(0) / interval;
                return if v[0] == 1 {
                    Ok(Admitted::new(
                        p.burst,
                        u32::try_from(remaining).unwrap_or(u32::MAX),
                        micros(v[2]),
                    ))
                } else {
                    Err(RateLimited::new(micros(v[1]), p.burst, micros(v[2])))
                };
            }
            Ok(Ok(v)) => format!("unexpected script answer {v:?}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", inner.timeout),
        };
        inner.errors.increment(1);
        let recheck = u64::try_from(inner.recheck.as_nanos()).unwrap_or(u64::MAX);
        inner
            .skip_until
            .store(inner.now().saturating_add(recheck), Ordering::Relaxed);
        if !inner.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(prefix = %inner.prefix, %error, on_error = ?inner.on_error, "Redis rate limiter unreachable");
        }
        inner.fallback(key, p.burst)
    }
}

impl Inner {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fallback(&self, key: &str, burst: u32) -> Result<Admitted, RateLimited> {
        match self.on_error {
            OnRedisError::FailOpen => Ok(Admitted::new(burst, burst, Duration::ZERO)),
            OnRedisError::FailClosed => Err(RateLimited::new(
                Duration::from_secs(1),
                burst,
                Duration::from_secs(1),
            )),
            OnRedisError::Local => self.local.check(&key.to_owned()),
        }
    }
}

/// A key that can name a Redis key.
pub trait RedisKey {
    /// The key as text.
    fn redis_key(&self) -> Cow<'_, str>;
}

impl RedisKey for String {
    fn redis_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl RedisKey for &str {
    fn redis_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl RedisKey for IpAddr {
    fn redis_key(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

impl RedisKey for HeaderValue {
    fn redis_key(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl RedisKey for u64 {
    fn redis_key(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

/// The key used for requests without one.
const UNKEYED: &str = "~unkeyed";

fn key_of<Req, X>(extractor: &X, req: &Req) -> String
where
    X: KeyExtractor<Req>,
    X::Key: RedisKey,
{
    extractor
        .extract(req)
        .map_or_else(|| UNKEYED.to_owned(), |k| k.redis_key().into_owned())
}

/// Applies a [`RedisRateLimiter`] to a service, keyed by `X`; over-limit
/// requests fail with [`RateLimited`] (or, after
/// [`answer_429`](RedisRateLimitLayer::answer_429), get a `429`).
///
/// The check is a network round trip, so the response future is boxed.
///
/// ```no_run
/// use msp_resilience::rate_limit::{PeerAddr, RedisRateLimitConfig, RedisRateLimitLayer, RedisRateLimiter};
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::new(RedisRateLimitConfig::new("redis://127.0.0.1:6379", "10/s".parse()?))?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "ok" }))
///     .layer(RedisRateLimitLayer::new(limiter, PeerAddr::new()).answer_429());
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRateLimitLayer<X> {
    limiter: RedisRateLimiter,
    extractor: X,
}

impl<X> RedisRateLimitLayer<X> {
    /// Limits requests by the key `extractor` finds.
    pub fn new(limiter: RedisRateLimiter, extractor: X) -> Self {
        RedisRateLimitLayer { limiter, extractor }
    }

    /// Answers over-limit requests with `429 Too Many Requests`,
    /// `Retry-After` and `RateLimit-*` headers instead of an error.
    pub fn answer_429(self) -> HttpRedisRateLimitLayer<X> {
        HttpRedisRateLimitLayer { layer: self }
    }
}

impl<S, X: Clone> Layer<S> for RedisRateLimitLayer<X> {
    type Service = RedisRateLimit<S, X>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit {
            inner,
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
        }
    }
}

/// A [`RedisRateLimitLayer`] after
/// [`answer_429`](RedisRateLimitLayer::answer_429).
#[derive(Debug, Clone)]
pub struct HttpRedisRateLimitLayer<X> {
    layer: RedisRateLimitLayer<X>,
}

impl<S, X: Clone> Layer<S> for HttpRedisRateLimitLayer<X> {
    type Service = HttpRedisRateLimit<S, X>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRedisRateLimit {
            inner: self.layer.layer(inner),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A service behind a [`RedisRateLimiter`]; see [`RedisRateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RedisRateLimit<S, X> {
    inner: S,
    limiter: RedisRateLimiter,
    extractor: X,
}

impl<S, X> RedisRateLimit<S, X> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, X, Req> Service<Req> for RedisRateLimit<S, X>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    X: KeyExtractor<Req>,
    X::Key: RedisKey,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = key_of(&self.extractor, &req);
        let limiter = self.limiter.clone();
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            limiter.check(&key).await?;
            ready.call(req).await.map_err(Into::into)
        })
    }
}

/// An HTTP service behind a [`RedisRateLimiter`]: `429` instead of an
/// error; the inner error type is kept.
#[derive(Debug, Clone)]
pub struct HttpRedisRateLimit<S, X> {
    inner: RedisRateLimit<S, X>,
}

impl<S, X> HttpRedisRateLimit<S, X> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.inner
    }
}

impl<S, X, ReqBody, ResBody> Service<Request<ReqBody>> for HttpRedisRateLimit<S, X>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    X: KeyExtractor<Request<ReqBody>>,
    X::Key: RedisKey,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let this = &mut self.inner;
        let key = key_of(&this.extractor, &req);
        let limiter = this.limiter.clone();
        let clone = this.inner.clone();
        let mut ready = std::mem::replace(&mut this.inner, clone);
        Box::pin(async move {
            match limiter.check(&key).await {
                Ok(admitted) => {
                    let mut res = ready.call(req).await?;
                    admitted_headers(res.headers_mut(), &admitted);
                    Ok(res)
                }
                Err(limited) => Ok(too_many_requests(&limited)),
            }
        })
    }
}
