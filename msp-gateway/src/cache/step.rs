//! The cache's place in a request's way: [`ResponseCache::lookup`] after
//! auth, [`Pending::store`] on the upstream's response.

use super::ResponseCache;
use super::capture::{Capture, Destination};
use super::control::CacheControl;
use super::key::{Key, Vary};
use super::store::{Join, RouteStore, Slot, Stored};
use crate::config::RouteConfig;
use crate::gateway::Body;
use http::header::{AGE, AUTHORIZATION, RANGE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use msp_core::http::header::REQUEST_ID;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The response header saying whether the cache answered.
pub const X_CACHE: &str = "x-cache";

/// A route's store size when `cache_max_bytes` is not set: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The largest body stored: 1 MiB (or the route's `cache_max_bytes`, if
/// smaller); bigger ones stream through uncached.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// How long a request waits for another one fetching the same key before
/// going upstream itself.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A route's cache settings.
#[derive(Debug, Clone, Copy)]
struct Policy {
    default_ttl: u64,
    max_bytes: u64,
    max_entry: usize,
}

impl Policy {
    /// `None` for a route without `cache_ttl`.
    fn of(route: &RouteConfig) -> Option<Policy> {
        let max_bytes = route.cache_max_bytes.map_or(DEFAULT_MAX_BYTES, |n| n.get());
        Some(Policy {
            default_ttl: route.cache_ttl?,
            max_bytes,
            max_entry: usize::try_from(max_bytes)
                .map_or(MAX_ENTRY_BYTES, |m| m.min(MAX_ENTRY_BYTES)),
        })
    }
}

/// What the cache needs of a request, taken before it is rewritten.
#[derive(Debug)]
pub(crate) struct CacheRequest<'a> {
    policy: Policy,
    route: &'a RouteConfig,
    version: u64,
    method: Method,
    host: String,
    target: String,
}

impl<'a> CacheRequest<'a> {
    /// For a request to `route` (of config `version`); nothing if the
    /// route does not cache.
    pub(crate) fn new<B>(
        route: Option<&'a RouteConfig>,
        version: u64,
        req: &Request<B>,
        host: Option<&str>,
    ) -> Option<Self> {
        let route = route?;
        Some(CacheRequest {
            policy: Policy::of(route)?,
            route,
            version,
            method: req.method().clone(),
            host: host.unwrap_or_default().to_owned(),
            target: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
        })
    }
}

/// The answer of [`ResponseCache::lookup`].
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A fresh stored response.
    Hit(Response<Body>),
    /// Go upstream, then hand the response to [`Pending::store`].
    Miss(Pending),
}

/// A request that went upstream: what to do with its response.
#[derive(Debug)]
pub(crate) struct Pending(State);

enum State {
    /// The route does not cache.
    Off,
    /// Not looked up, not stored (the request's method or directives).
    Bypass,
    /// Looked up and missed: store the response if it may be.
    Miss(Box<Miss>),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Off => "Off",
            State::Bypass => "Bypass",
            State::Miss(_) => "Miss",
        })
    }
}

struct Miss {
    route: Arc<str>,
    policy: Policy,
    store: Arc<RouteStore>,
    base: Key,
    /// The varied values come from these (the headers sent upstream).
    headers: HeaderMap,
    authorized: bool,
    flight: Option<super::store::Flight>,
}

fn count(route: &str, result: &'static str) {
    metrics::counter!("msp_gateway_cache_total", "route" => route.to_owned(), "result" => result)
        .increment(1);
}

/// RFC 9110 §15.1's heuristically cacheable statuses, less 206 (the
/// cache stores whole responses only).
fn cacheable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

enum Found {
    Hit(Arc<Stored>),
    /// Not there: the key to fetch it under.
    Miss(Key),
}

async fn find(store: &RouteStore, base: &Key, headers: &HeaderMap, now: Instant) -> Found {
    let (key, slot) = match store.get(base).await {
        Some(Slot::Variants(names, _)) => {
            let key = base.variant(&names, headers);
            let slot = store.get(&key).await;
            (key, slot)
        }
        slot => (base.clone(), slot),
    };
    match slot {
        Some(Slot::Response(stored)) if stored.is_fresh(now) => Found::Hit(stored),
        Some(_) => {
            store.remove(&key).await;
            Found::Miss(key)
        }
        None => Found::Miss(key),
    }
}

fn hit(route: &str, stored: &Stored, method: &Method, now: Instant) -> Response<Body> {
    count(route, "hit");
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::full(stored.body.clone())
    };
    let mut res = Response::new(body);
    *res.status_mut() = stored.status;
    *res.headers_mut() = stored.headers.clone();
    res.headers_mut()
        .insert(AGE, HeaderValue::from(stored.age(now)));
    res.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static("HIT"));
    res
}

impl ResponseCache {
    /// Looks `req` up in `route`'s store. `headers` are the request's
    /// headers as they go upstream (identity headers already set), which
    /// is what a response's `Vary` refers to.
    pub(crate) async fn lookup(
        &self,
        route: &Arc<str>,
        req: Option<CacheRequest<'_>>,
        headers: &HeaderMap,
    ) -> Lookup {
        let Some(req) = req else {
            return Lookup::Miss(Pending(State::Off));
        };
        let cc = CacheControl::from_headers(headers);
        let method_ok = req.method == Method::GET || req.method == Method::HEAD;
        if !method_ok || cc.no_store || cc.no_cache || headers.contains_key(RANGE) {
            count(route, "bypass");
            return Lookup::Miss(Pending(State::Bypass));
        }
        let Some(store) = self
            .stores
            .of(route, req.route, req.version, req.policy.max_bytes)
        else {
            count(route, "bypass");
            return Lookup::Miss(Pending(State::Bypass));
        };
        let base = Key::new(route.clone(), req.method.clone(), &req.host, &req.target);
        let flight = match find(&store, &base, headers, Instant::now()).await {
            Found::Hit(stored) => {
                return Lookup::Hit(hit(route, &stored, &req.method, Instant::now()));
            }
            Found::Miss(key) => match store.join(&key) {
                Join::Leader(flight) => {
                    // Stored between the lookup and the join?
                    if let Found::Hit(stored) = find(&store, &base, headers, Instant::now()).await {
                        drop(flight);
                        return Lookup::Hit(hit(route, &stored, &req.method, Instant::now()));
                    }
                    Some(flight)
                }
                Join::Follower(mut done) => {
                    // Released when the leader stored its response or
                    // found it not storable; then at most one more look.
                    let _ = tokio::time::timeout(LOCK_WAIT, done.changed()).await;
                    if let Found::Hit(stored) = find(&store, &base, headers, Instant::now()).await {
                        return Lookup::Hit(hit(route, &stored, &req.method, Instant::now()));
                    }
                    None
                }
            },
        };
        Lookup::Miss(Pending(State::Miss(Box::new(Miss {
            route: route.clone(),
            policy: req.policy,
            store,
            base,
            headers: headers.clone(),
            authorized: headers.contains_key(AUTHORIZATION),
            flight,
        }))))
    }
}

impl Pending {
    /// Marks `res` (`X-Cache: MISS` on a caching route) and, if it may be
    /// stored, stores it as its body streams to the client.
    pub(crate) fn store(self, mut res: Response<Body>) -> Response<Body> {
        let miss = match self.0 {
            State::Off => return res,
            State::Bypass => {
                res.headers_mut()
                    .insert(X_CACHE, HeaderValue::from_static("MISS"));
                return res;
            }
            State::Miss(miss) => miss,
        };
        let mut headers = res.headers().clone();
        res.headers_mut()
            .insert(X_CACHE, HeaderValue::from_static("MISS"));
        let Some((ttl, initial_age, vary)) = storable(&miss, &res) else {
            count(&miss.route, "uncacheable");
            return res;
        };
        count(&miss.route, "miss");
        headers.remove(AGE);
        headers.remove(REQUEST_ID);
        let Miss {
            store,
            base,
            headers: req_headers,
            flight,
            policy,
            ..
        } = *miss;
        let (key, variants) = match vary {
            Vary::Headers(names) => (base.variant(&names, &req_headers), Some((base, names))),
            _ => (base, None),
        };
        let destination = Destination {
            store,
            key,
            variants,
            flight,
            status: res.status(),
            headers,
            initial_age,
            ttl,
        };
        res.map(|body| Body::new(Capture::new(body, policy.max_entry, destination)))
    }
}

/// The freshness left, the age and the `Vary` of a response that may be
/// stored; `None` if it may not.
fn storable(miss: &Miss, res: &Response<Body>) -> Option<(Duration, u64, Vary)> {
    let headers = res.headers();
    if !cacheable_status(res.status()) || headers.contains_key(SET_COOKIE) {
        return None;
    }
    let cc = CacheControl::from_headers(headers);
    if cc.no_store || cc.no_cache || cc.private {
        return None;
    }
    // RFC 9111 §3.5: a response to an authorized request is shared only
    // when it says so.
    if miss.authorized && !cc.public && cc.s_maxage.is_none() {
        return None;
    }
    let vary = Vary::of(headers);
    if vary == Vary::Any {
        return None;
    }
    if res.body().size_hint().lower() > miss.policy.max_entry as u64 {
        return None;
    }
    let initial_age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let lifetime = cc.freshness(Some(miss.policy.default_ttl))?;
    let left = lifetime.checked_sub(initial_age).filter(|&s| s > 0)?;
    Some((Duration::from_secs(left), initial_age, vary))
}
