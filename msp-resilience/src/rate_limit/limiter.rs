//! The direct and the keyed limiter.

use super::Quota;
use super::clock::{Clock, Source};
use super::error::RateLimited;
use super::gcra::{Admitted, Cell, Params, SharedParams};
use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// A value alone on its cache line(s).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One rate limit (GCRA in one atomic), shared by every clone.
///
/// `check` is lock-free: a clock read, a few loads and one
/// compare-and-swap. The quota can be replaced at run time with
/// [`set_quota`](RateLimiter::set_quota); the state of the limit carries over.
///
/// # Example
///
/// ```
/// use msp_resilience::rate_limit::{Quota, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::pause();
/// let limiter = RateLimiter::new("2/min".parse()?);
/// let clone = limiter.clone();
/// assert!(limiter.check().is_ok());
/// assert!(clone.check().is_ok());
/// let limited = limiter.check().unwrap_err();
/// assert_eq!(limited.retry_after().as_secs(), 30);
///
/// limiter.set_quota(Quota::per_minute(100)?);
/// assert!(clone.check().is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Direct>,
}

struct Direct {
    cell: Padded<Cell>,
    params: SharedParams,
    clock: Source,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.quota())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter admitting `quota`, starting with a full burst, on the
    /// [`Tokio`](Clock::Tokio) clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, Clock::Tokio)
    }

    /// A limiter reading `clock`.
    pub fn with_clock(quota: Quota, clock: Clock) -> Self {
        RateLimiter {
            inner: Arc::new(Direct {
                cell: Padded(Cell::new()),
                params: SharedParams::new(quota),
                clock: Source::start(clock),
            }),
        }
    }

    /// Admits one request or says when to retry.
    #[inline]
    pub fn check(&self) -> Result<Admitted, RateLimited> {
        let d = &*self.inner;
        d.cell.0.check(d.params.load(), d.clock.nanos())
    }

    /// The current quota.
    pub fn quota(&self) -> Quota {
        self.inner.params.quota()
    }

    /// Replaces the quota for every clone. What was used carries over in
    /// requests: with 2 of `2/min` used, `4/min` leaves 2 more.
    pub fn set_quota(&self, quota: Quota) {
        let d = &*self.inner;
        let old = d.params.store(quota);
        d.cell.0.rescale(old, Params::from(quota), d.clock.nanos());
    }
}

type QuotaFn<K> = dyn Fn(&K) -> Option<Quota> + Send + Sync;

struct Entry<K> {
    key: K,
    cell: Cell,
    /// A quota of this key's own; `None` follows the limiter's quota.
    own: Option<Params>,
}

struct Shard<K> {
    table: HashTable<Entry<K>>,
    /// Idle keys are swept from the shard when it grows to this size.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 64;

struct Keyed<K> {
    shards: Box<[Padded<RwLock<Shard<K>>>]>,
    /// Nanoseconds a key must have been idle before a shard's sweep drops it.
    idle_grace: u64,
    hasher: DefaultHashBuilder,
    params: SharedParams,
    unkeyed: Padded<Cell>,
    overrides: RwLock<HashMap<K, Quota>>,
    quota_fn: Option<Box<QuotaFn<K>>>,
    clock: Source,
}

/// A rate limit per key (client IP, API key, user…), shared by every clone.
///
/// Each key has its own GCRA cell. By default every key gets the
/// limiter's quota; [`quota_for`](KeyedRateLimiterBuilder::quota_for) and
/// [`quota_fn`](KeyedRateLimiterBuilder::quota_fn) give keys their own.
/// Keys live in a sharded hash table: a check on a known key takes one
/// shard's read lock (never contended by other readers), a new key the
/// shard's write lock. Keys whose limit is fully replenished carry no
/// information and are evicted: automatically when a shard doubles in size
/// (once they have been idle for the
/// [grace period](KeyedRateLimiterBuilder::idle_grace)), and on
/// [`evict_idle`](KeyedRateLimiter::evict_idle).
///
/// # Example
///
/// ```
/// use msp_resilience::rate_limit::{KeyedRateLimiter, Quota};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = KeyedRateLimiter::builder("1/hour".parse()?)
///     .quota_for("partner", "3/hour".parse()?)
///     .build();
///
/// assert!(limiter.check(&"alice").is_ok());
/// assert!(limiter.check(&"alice").is_err());
/// assert!(limiter.check(&"bob").is_ok());
/// for _ in 0..3 {
///     assert!(limiter.check(&"partner").is_ok());
/// }
/// assert!(limiter.check(&"partner").is_err());
/// # Ok(())
/// # }
/// ```
pub struct KeyedRateLimiter<K> {
    inner: Arc<Keyed<K>>,
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.inner.params.quota())
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

/// Builds a [`KeyedRateLimiter`].
#[must_use]
pub struct KeyedRateLimiterBuilder<K> {
    quota: Quota,
    overrides: HashMap<K, Quota>,
    quota_fn: Option<Box<QuotaFn<K>>>,
    shards: usize,
    idle_grace: Duration,
    clock: Clock,
}

impl<K> fmt::Debug for KeyedRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterBuilder")
            .field("quota", &self.quota)
            .field("overrides", &self.overrides.len())
            .field("quota_fn", &self.quota_fn.is_some())
            .field("shards", &self.shards)
            .field("idle_grace", &self.idle_grace)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: Hash + Eq> KeyedRateLimiterBuilder<K> {
    /// How long a key must have been idle (its limit fully replenished)
    /// before the automatic sweep drops it (default 10 s). A short grace
    /// keeps memory low; a longer one spares keys that come back often the
    /// cost of being re-inserted. [`evict_idle`](KeyedRateLimiter::evict_idle)
    /// ignores it.
    pub fn idle_grace(mut self, grace: Duration) -> Self {
        self.idle_grace = grace;
        self
    }

    /// Gives `key` its own quota (it wins over `quota_fn`).
    pub fn quota_for(mut self, key: impl Into<K>, quota: Quota) -> Self {
        self.overrides.insert(key.into(), quota);
        self
    }

    /// Asks `f` for the quota of each new key; `None` means the default.
    pub fn quota_fn(mut self, f: impl Fn(&K) -> Option<Quota> + Send + Sync + 'static) -> Self {
        self.quota_fn = Some(Box::new(f));
        self
    }

    /// The clock (default [`Clock::Tokio`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The number of shards, rounded up to a power of two (default 64).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.clamp(1, 1 << 16).next_power_of_two();
        self
    }

    /// Builds the limiter.
    pub fn build(self) -> KeyedRateLimiter<K> {
        KeyedRateLimiter {
            inner: Arc::new(Keyed {
                shards: (0..self.shards)
                    .map(|_| {
                        Padded(RwLock::new(Shard {
                            table: HashTable::new(),
                            sweep_at: MIN_SWEEP,
                        }))
                    })
                    .collect(),
                hasher: DefaultHashBuilder::default(),
                idle_grace: u64::try_from(self.idle_grace.as_nanos()).unwrap_or(u64::MAX),
                params: SharedParams::new(self.quota),
                unkeyed: Padded(Cell::new()),
                overrides: RwLock::new(self.overrides),
                quota_fn: self.quota_fn,
                clock: Source::start(self.clock),
            }),
        }
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A limiter giving every key `quota`.
    pub fn new(quota: Quota) -> Self {
        Self::builder(quota).build()
    }

    /// Starts a builder with `quota` as the default for every key.
    pub fn builder(quota: Quota) -> KeyedRateLimiterBuilder<K> {
        KeyedRateLimiterBuilder {
            quota,
            overrides: HashMap::new(),
            quota_fn: None,
            shards: 64,
            idle_grace: Duration::from_secs(10),
            clock: Clock::Tokio,
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard<K>> {
        // hashbrown indexes with the low bits and tags with the top 7: pick
        // the shard from bits in between.
        let i = (hash >> 32) as usize & (self.inner.shards.len() - 1);
        &self.inner.shards[i].0
    }

    /// Admits one request of `key` or says when to retry.
    #[inline]
    pub fn check(&self, key: &K) -> Result<Admitted, RateLimited> {
        let k = &*self.inner;
        let now = k.clock.nanos();
        let hash = k.hasher.hash_one(key);
        let shard = self.shard(hash);
        {
            let guard = read(shard);
            if let Some(e) = guard.table.find(hash, |e| e.key == *key) {
                let p = e.own.unwrap_or_else(|| k.params.load());
                return e.cell.check(p, now);
            }
        }
        self.insert_and_check(key, hash, shard, now)
    }

    /// Admits one request that has no key, against one cell shared by all
    /// such requests, with the default quota.
    pub fn check_unkeyed(&self) -> Result<Admitted, RateLimited> {
        let k = &*self.inner;
        k.unkeyed.0.check(k.params.load(), k.clock.nanos())
    }

    fn own_quota(&self, key: &K) -> Option<Params> {
        let k = &*self.inner;
        if let Some(q) = read(&k.overrides).get(key) {
            return Some(Params::from(*q));
        }
        k.quota_fn.as_ref().and_then(|f| f(key)).map(Params::from)
    }

    #[cold]
    fn insert_and_check(
        &self,
        key: &K,
        hash: u64,
        shard: &RwLock<Shard<K>>,
        now: u64,
    ) -> Result<Admitted, RateLimited> {
        let k = &*self.inner;
        let own = self.own_quota(key);
        let mut guard = write(shard);
        let shard = &mut *guard;
        if shard.table.len() >= shard.sweep_at {
            let idle_since = now.saturating_sub(k.idle_grace);
            shard.table.retain(|e| !e.cell.is_idle(idle_since));
            shard.sweep_at = (shard.table.len() * 2).max(MIN_SWEEP);
        }
        let entry = shard
            .table
            .entry(hash, |e| e.key == *key, |e| k.hasher.hash_one(&e.key))
            .or_insert_with(|| Entry {
                key: key.clone(),
                cell: Cell::new(),
                own,
            });
        let e = entry.get();
        e.cell.check(e.own.unwrap_or_else(|| k.params.load()), now)
    }

    /// The default quota.
    pub fn quota(&self) -> Quota {
        self.inner.params.quota()
    }

    /// Replaces the default quota for every clone. What each key used
    /// carries over in requests (with 2 of `2/min` used, `4/min` leaves 2
    /// more); keys with their own quota are not affected. Takes each
    /// shard's read lock once.
    pub fn set_quota(&self, quota: Quota) {
        let k = &*self.inner;
        let old = k.params.store(quota);
        let new = Params::from(quota);
        let now = k.clock.nanos();
        for shard in k.shards.iter() {
            for e in read(&shard.0).table.iter() {
                if e.own.is_none() {
                    e.cell.rescale(old, new, now);
                }
            }
        }
    }

    /// Gives `key` its own quota from now on, or (with `None`) makes it
    /// follow the default quota again.
    pub fn set_quota_for(&self, key: K, quota: Option<Quota>) {
        let k = &*self.inner;
        {
            let mut overrides = write(&k.overrides);
            match quota {
                Some(q) => overrides.insert(key.clone(), q),
                None => overrides.remove(&key),
            };
        }
        let own = quota
            .map(Params::from)
            .or_else(|| k.quota_fn.as_ref().and_then(|f| f(&key)).map(Params::from));
        let hash = k.hasher.hash_one(&key);
        let mut guard = write(self.shard(hash));
        if let Some(e) = guard.table.find_mut(hash, |e| e.key == key) {
            let global = k.params.load();
            let old = e.own.unwrap_or(global);
            e.cell.rescale(old, own.unwrap_or(global), k.clock.nanos());
            e.own = own;
        }
    }

    /// Forgets every key whose limit is fully replenished; returns how many.
    pub fn evict_idle(&self) -> usize {
        let k = &*self.inner;
        let now = k.clock.nanos();
        let mut evicted = 0;
        for shard in k.shards.iter() {
            let mut guard = write(&shard.0);
            let before = guard.table.len();
            guard.table.retain(|e| !e.cell.is_idle(now));
            evicted += before - guard.table.len();
            guard.sweep_at = (guard.table.len() * 2).max(MIN_SWEEP);
        }
        evicted
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| read(&s.0).table.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
