//! What a request is limited by: the limit trait and key extractors.

use super::error::RateLimited;
use super::{Admitted, KeyedRateLimiter, RateLimiter};
use http::{HeaderName, HeaderValue, Request};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};

/// A limit a request is checked against: [`RateLimiter`] (one limit for
/// all requests) or [`KeyedLimit`] (a limit per key).
pub trait Limit<Req> {
    /// Admits `req` or rejects it.
    fn check(&self, req: &Req) -> Result<Admitted, RateLimited>;
}

impl<Req> Limit<Req> for RateLimiter {
    #[inline]
    fn check(&self, _: &Req) -> Result<Admitted, RateLimited> {
        RateLimiter::check(self)
    }
}

/// Finds the key a request is limited by.
///
/// Implemented by [`PeerAddr`], [`HeaderKey`] and [`KeyFn`]. A request
/// without a key (`None`) is checked against one limit shared by all such
/// requests.
pub trait KeyExtractor<Req> {
    /// The key.
    type Key: Hash + Eq + Clone;

    /// The request's key, if it has one.
    fn extract(&self, req: &Req) -> Option<Self::Key>;
}

/// Keys HTTP requests by the client's IP address.
///
/// [`PeerAddr::new`] reads, from the request extensions, a [`SocketAddr`]
/// (insert it in your own accept loop) and, with the `axum` feature,
/// axum's `ConnectInfo<SocketAddr>` — what
/// `Router::into_make_service_with_connect_info::<SocketAddr>()` inserts —
/// so a per-IP limit under `axum::serve` needs no code of yours:
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{Router, routing::get};
/// use msp_resilience::rate_limit::{KeyedRateLimiter, PeerAddr, RateLimitLayer};
/// use std::net::SocketAddr;
///
/// # fn _serve() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = KeyedRateLimiter::new("100/min".parse()?);
/// let app = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(RateLimitLayer::keyed(limiter, PeerAddr::new()).answer_429());
/// let make_service = app.into_make_service_with_connect_info::<SocketAddr>();
/// // axum::serve(listener, make_service).await?;
/// # drop(make_service);
/// # Ok(())
/// # }
/// # }
/// ```
///
/// Any other connection type is read with [`PeerAddr::with`]:
///
/// ```
/// use msp_resilience::rate_limit::PeerAddr;
/// use std::net::SocketAddr;
/// #[derive(Clone)]
/// struct MyConnInfo { remote: SocketAddr }
///
/// let peer = PeerAddr::with(|ext| ext.get::<MyConnInfo>().map(|c| c.remote.ip()));
/// # let _ = peer;
/// ```
///
/// The address is the TCP peer: behind a proxy, key by a trusted
/// forwarded header with [`KeyFn`] instead.
#[derive(Clone, Copy)]
pub struct PeerAddr {
    read: fn(&http::Extensions) -> Option<IpAddr>,
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerAddr").finish_non_exhaustive()
    }
}

impl Default for PeerAddr {
    fn default() -> Self {
        Self::new()
    }
}

/// A `SocketAddr` extension, else (feature `axum`) axum's `ConnectInfo`.
fn connection_peer(ext: &http::Extensions) -> Option<IpAddr> {
    if let Some(addr) = ext.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    None
}

impl PeerAddr {
    /// Reads a `SocketAddr` extension or (feature `axum`) axum's
    /// `ConnectInfo<SocketAddr>`.
    pub fn new() -> Self {
        PeerAddr {
            read: connection_peer,
        }
    }

    /// Reads the address with `read`.
    pub fn with(read: fn(&http::Extensions) -> Option<IpAddr>) -> Self {
        PeerAddr { read }
    }
}

impl<B> KeyExtractor<Request<B>> for PeerAddr {
    type Key = IpAddr;

    fn extract(&self, req: &Request<B>) -> Option<IpAddr> {
        (self.read)(req.extensions())
    }
}

/// Keys HTTP requests by the value of a header (an API key, a tenant id, an
/// identity set by an authenticating layer).
#[derive(Debug, Clone)]
pub struct HeaderKey(HeaderName);

impl HeaderKey {
    /// Keys by `name`.
    pub fn new(name: HeaderName) -> Self {
        HeaderKey(name)
    }
}

impl<B> KeyExtractor<Request<B>> for HeaderKey {
    type Key = HeaderValue;

    fn extract(&self, req: &Request<B>) -> Option<HeaderValue> {
        req.headers().get(&self.0).cloned()
    }
}

/// Keys requests with a closure.
///
/// ```
/// use msp_resilience::rate_limit::KeyFn;
/// let by_user = KeyFn(|req: &http::Request<()>| {
///     req.uri().query().and_then(|q| q.strip_prefix("user=")).map(str::to_owned)
/// });
/// # let _ = by_user;
/// ```
#[derive(Clone, Copy)]
pub struct KeyFn<F>(pub F);

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<Req, K, F> KeyExtractor<Req> for KeyFn<F>
where
    F: Fn(&Req) -> Option<K>,
    K: Hash + Eq + Clone,
{
    type Key = K;

    fn extract(&self, req: &Req) -> Option<K> {
        (self.0)(req)
    }
}

/// A [`KeyedRateLimiter`] with the extractor that finds each request's key.
#[derive(Debug, Clone)]
pub struct KeyedLimit<K, X> {
    limiter: KeyedRateLimiter<K>,
    extractor: X,
}

impl<K, X> KeyedLimit<K, X> {
    /// Limits requests by the key `extractor` finds.
    pub fn new(limiter: KeyedRateLimiter<K>, extractor: X) -> Self {
        KeyedLimit { limiter, extractor }
    }

    /// The limiter.
    pub fn limiter(&self) -> &KeyedRateLimiter<K> {
        &self.limiter
    }
}

impl<Req, K, X> Limit<Req> for KeyedLimit<K, X>
where
    X: KeyExtractor<Req, Key = K>,
    K: Hash + Eq + Clone,
{
    #[inline]
    fn check(&self, req: &Req) -> Result<Admitted, RateLimited> {
        match self.extractor.extract(req) {
            Some(key) => self.limiter.check(&key),
            None => self.limiter.check_unkeyed(),
        }
    }
}
