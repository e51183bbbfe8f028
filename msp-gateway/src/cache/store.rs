//! The stores: one moka cache per route, bounded in bytes, and the
//! in-flight misses that concurrent requests for one key wait on.

use super::key::Key;
use crate::config::RouteConfig;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A stored response.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When it was stored (tokio's clock, so tests can pause it).
    pub(crate) stored_at: Instant,
    /// Its age when stored (the upstream's `Age`), in seconds.
    pub(crate) initial_age: u64,
    /// How long it stays fresh from `stored_at`.
    pub(crate) ttl: Duration,
}

impl Stored {
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored_at) < self.ttl
    }

    /// The `Age` to send: the age when stored plus the time held.
    pub(crate) fn age(&self, now: Instant) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at).as_secs())
    }

    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 64
    }
}

/// One store entry.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    /// Under a key without variant: the response varies on these request
    /// headers; look again with [`Key::variant`].
    Variants(Arc<[HeaderName]>, Duration),
    /// A response.
    Response(Arc<Stored>),
}

impl Slot {
    fn ttl(&self) -> Duration {
        match self {
            Slot::Variants(_, ttl) => *ttl,
            Slot::Response(r) => r.ttl,
        }
    }

    fn weight(&self) -> usize {
        match self {
            Slot::Variants(names, _) => 32 + names.iter().map(|n| n.as_str().len()).sum::<usize>(),
            Slot::Response(r) => r.weight(),
        }
    }
}

/// Evicts an entry when its freshness ends (moka's own clock; freshness
/// itself is checked on tokio's clock at lookup).
struct FreshFor;

impl moka::Expiry<Key, Slot> for FreshFor {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Slot,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl())
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Slot,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

/// One route's cache, for one setting of the route.
pub(crate) struct RouteStore {
    /// The route's settings the entries were stored under.
    config: RouteConfig,
    /// The first config version it served…
    created: u64,
    /// …and the last one whose route settings were found equal.
    seen: AtomicU64,
    entries: moka::future::Cache<Key, Slot>,
    flights: Mutex<HashMap<Key, watch::Sender<()>>>,
}

/// What an existing store is to a request of a given config version.
enum Reuse {
    /// Serve the request from it.
    Serve(Arc<RouteStore>),
    /// The request is of an older config: no cache for it.
    Bypass,
    /// The route changed: a new, empty store replaces it.
    Replace,
}

impl RouteStore {
    /// Whether this store serves a request of config `version` whose route
    /// is `config` (a newer config with the same route settings keeps it).
    fn reuse(self: &Arc<Self>, config: &RouteConfig, version: u64) -> Reuse {
        match self.fits(version) {
            Fit::Yes => Reuse::Serve(self.clone()),
            Fit::Older => Reuse::Bypass,
            Fit::Newer if self.config == *config => {
                self.seen.fetch_max(version, Ordering::AcqRel);
                Reuse::Serve(self.clone())
            }
            Fit::Newer => Reuse::Replace,
        }
    }

    pub(crate) fn new(config: &RouteConfig, version: u64, max_bytes: u64) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Key, v: &Slot| {
                u32::try_from(k.weight().saturating_add(v.weight())).unwrap_or(u32::MAX)
            })
            .expire_after(FreshFor)
            .build();
        RouteStore {
            config: config.clone(),
            created: version,
            seen: AtomicU64::new(version),
            entries,
            flights: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn get(&self, key: &Key) -> Option<Slot> {
        self.entries.get(key).await
    }

    pub(crate) async fn insert(&self, key: Key, slot: Slot) {
        self.entries.insert(key, slot).await;
    }

    pub(crate) async fn remove(&self, key: &Key) {
        self.entries.invalidate(key).await;
    }

    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Joins the miss in flight for `key`, or starts one.
    pub(crate) fn join(self: &Arc<Self>, key: &Key) -> Join {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(leader) = flights.get(key) {
            return Join::Follower(leader.subscribe());
        }
        flights.insert(key.clone(), watch::Sender::new(()));
        Join::Leader(Flight {
            store: self.clone(),
            key: key.clone(),
        })
    }
}

/// Whether this request goes upstream for its key or waits.
pub(crate) enum Join {
    /// Go upstream; followers wait until the [`Flight`] is dropped.
    Leader(Flight),
    /// Another request is fetching this key: wait until it is done.
    Follower(watch::Receiver<()>),
}

/// A miss in flight; dropping it (after storing, or when the response
/// turned out not storable) releases the followers.
pub(crate) struct Flight {
    store: Arc<RouteStore>,
    key: Key,
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Removing the sender closes the channel: every follower wakes.
        self.store
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Every route's store, kept across reloads.
#[derive(Default)]
pub(crate) struct Stores {
    routes: std::sync::RwLock<HashMap<Arc<str>, Arc<RouteStore>>>,
}

/// Whether a store serves a request of config `version`.
enum Fit {
    Yes,
    /// The request is of an older config than the store: no cache for it.
    Older,
    /// A newer config: the store is kept if the route did not change.
    Newer,
}

impl RouteStore {
    fn fits(&self, version: u64) -> Fit {
        if version < self.created {
            Fit::Older
        } else if version <= self.seen.load(Ordering::Acquire) {
            Fit::Yes
        } else {
            Fit::Newer
        }
    }
}

impl Stores {
    /// The store of route `id` as `config` (of config `version`) sets it
    /// up: the same store while the route's settings stay equal across
    /// reloads, a new empty one once they change. `None` for a request
    /// still on an older config than the store's (during a reload).
    pub(crate) fn of(
        &self,
        id: &Arc<str>,
        config: &RouteConfig,
        version: u64,
        max_bytes: u64,
    ) -> Option<Arc<RouteStore>> {
        // Checked under the read lock first, then again under the write
        // lock before a new store replaces the old one.
        let found = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|store| store.reuse(config, version));
        match found {
            Some(Reuse::Serve(store)) => return Some(store),
            Some(Reuse::Bypass) => return None,
            Some(Reuse::Replace) | None => {}
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        match routes.get(id).map(|store| store.reuse(config, version)) {
            Some(Reuse::Serve(store)) => return Some(store),
            Some(Reuse::Bypass) => return None,
            Some(Reuse::Replace) | None => {}
        }
        let store = Arc::new(RouteStore::new(config, version, max_bytes));
        routes.insert(id.clone(), store.clone());
        Some(store)
    }

    /// Drops every entry of `route` (every route's with `None`, stores of
    /// routes a reload removed included); false if the route never cached
    /// anything.
    pub(crate) fn purge(&self, route: Option<&str>) -> bool {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let purged: Vec<Arc<RouteStore>> = match route {
            None => routes.drain().map(|(_, store)| store).collect(),
            Some(id) => routes.remove(id).into_iter().collect(),
        };
        drop(routes);
        // Responses still streaming into a purged store land in a store
        // nobody looks up any more.
        purged.iter().for_each(|store| store.clear());
        route.is_none() || !purged.is_empty()
    }
}
