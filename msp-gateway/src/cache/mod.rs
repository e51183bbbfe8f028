//! The response cache: a route's `cache_ttl` turns it on (RFC 9111, shared
//! cache semantics, in memory with moka).
//!
//! A request to a caching route is looked up **after** auth (a hit still
//! needs the route's credentials and counts against its rate limit) and
//! its response stored on the way back, while it streams to the client.
//!
//! - **What is stored**: responses to `GET` and `HEAD` with a status of
//!   200, 203, 204, 300, 301, 308, 404, 405, 410, 414 or 501, a body of at
//!   most [`MAX_ENTRY_BYTES`] (bigger ones stream through uncached), no
//!   `Set-Cookie`, no `Vary: *`, and none of `no-store`, `no-cache` or
//!   `private` in their `Cache-Control`. `no-cache` is not revalidated:
//!   such a response is simply not stored. A response to a request with
//!   `Authorization` is stored only if it says `public` or `s-maxage`.
//! - **For how long**: `s-maxage`, else `max-age`, else the route's
//!   `cache_ttl`, less the upstream's `Age`. `cache_ttl: 0` stores only
//!   what the upstream gives a lifetime. `Expires` is not read.
//! - **The key**: route id + method + host + path + query, plus the values
//!   of the request headers the stored response's `Vary` names (as sent
//!   upstream, so a client cannot pick a variant by spoofing an identity
//!   header). The same path under two routes never shares an entry.
//! - **Requests** with `Cache-Control: no-store` or `no-cache`, or a
//!   `Range`, skip the cache both ways.
//! - **Concurrent misses** for one key make one upstream request: the
//!   first streams its response to its client while the others wait (at
//!   most 5 s) and are then answered from the store — or, if the response
//!   was not storable, go upstream themselves.
//! - **Size**: each route has its own store bounded in bytes (body +
//!   headers + key): `cache_max_bytes`, by default [`DEFAULT_MAX_BYTES`].
//!   A route's store outlives reloads that leave the route's settings as
//!   they were; once they change (another upstream, TTL, size…), the
//!   route starts with an empty store.
//!
//! Answers carry `X-Cache: HIT` (with `Age`) or `X-Cache: MISS`. The admin
//! listener purges: `DELETE /cache` (every route) or
//! `DELETE /cache?route=ID`; in code, [`Gateway::cache`](crate::Gateway::cache).
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `msp_gateway_cache_total` | `route`, `result` = `hit`, `miss`, `bypass`, `uncacheable` | one per request to a caching route: answered from the store, stored (or being stored), not looked up, not storable |
//!
//! # Example
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use msp_gateway::Gateway;
//! use msp_gateway::config::GatewayConfig;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let counted = calls.clone();
//! let app = axum::Router::new().fallback(move || async move {
//!     counted.fetch_add(1, Ordering::SeqCst);
//!     "a product"
//! });
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let gateway = Gateway::from_config(GatewayConfig::from_yaml(&format!(r#"
//! routes:
//!   - path: "/api/products/*"
//!     service: product-service
//!     cache_ttl: 300
//! services:
//!   product-service: {{ instances: ["{addr}"] }}
//! "#), "inline")?).await?;
//!
//! let get = || http::Request::get("/api/products/1").header("host", "gw").body(Empty::<bytes::Bytes>::new());
//! let res = gateway.clone().oneshot(get()?).await?;
//! assert_eq!(res.headers()["x-cache"], "MISS");
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "a product");
//!
//! // Stored once its body has streamed through (a request arriving
//! // before that waits for it).
//! let res = gateway.clone().oneshot(get()?).await?;
//! assert_eq!(res.headers()["x-cache"], "HIT");
//! assert!(res.headers().contains_key("age"));
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "a product");
//!
//! gateway.cache().purge_all();
//! let res = gateway.clone().oneshot(get()?).await?;
//! assert_eq!(res.headers()["x-cache"], "MISS");
//! # Ok(())
//! # }
//! ```

mod capture;
mod control;
mod key;
mod step;
mod store;

pub use self::control::CacheControl;
pub(crate) use self::step::{CacheRequest, Lookup};
pub use self::step::{DEFAULT_MAX_BYTES, MAX_ENTRY_BYTES, X_CACHE};

use std::fmt;
use std::sync::Arc;

/// A gateway's response caches, one store per route (see the
/// [module docs](self)). Cheap to clone; every clone shares the stores.
#[derive(Clone, Default)]
pub struct ResponseCache {
    stores: Arc<store::Stores>,
}

impl ResponseCache {
    /// An empty cache.
    pub fn new() -> Self {
        metrics::describe_counter!(
            "msp_gateway_cache_total",
            "Requests to caching routes by result: hit, miss, bypass, uncacheable."
        );
        ResponseCache::default()
    }

    /// Drops every stored response of every route.
    pub fn purge_all(&self) {
        self.stores.purge(None);
    }

    /// Drops every stored response of the route with this id (its `name`,
    /// else its `path`); `false` if that route never stored anything.
    pub fn purge_route(&self, route: &str) -> bool {
        self.stores.purge(Some(route))
    }
}

impl fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache").finish_non_exhaustive()
    }
}
