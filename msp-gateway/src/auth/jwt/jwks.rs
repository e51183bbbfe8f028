//! The key cache of one JWT provider: a JWK set from a URL (through the
//! gateway's own pooled [`ProxyClient`]) or a file, refreshed in the
//! background on `Cache-Control: max-age` (bounded), re-fetched on an
//! unknown `kid` at most once per `min_refetch_interval` with concurrent
//! requests sharing one fetch, and the last good set kept while the source
//! is down.

use super::keys::KeySet;
use crate::config::JwksConfig;
use crate::proxy::ProxyClient;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, HeaderMap};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::Algorithm;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tower::ServiceExt;

/// The largest JWK set read (1 MiB).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The shortest refresh period whatever the config says (validation
/// refuses less; a config built in code is raised to it).
pub(crate) const MIN_REFRESH_FLOOR: Duration = Duration::from_secs(1);

/// Where the set comes from.
pub(crate) enum Source {
    Url { uri: Uri, client: Box<ProxyClient> },
    File(PathBuf),
}

/// What the cache holds now.
pub(crate) struct State {
    /// The last good set (`None`: never fetched).
    pub(crate) keys: Option<Arc<KeySet>>,
    /// Bumped by every successful fetch.
    pub(crate) generation: u64,
    /// When the last good set was fetched.
    pub(crate) fetched_at: Option<SystemTime>,
    /// The last fetch's error, until a fetch succeeds.
    pub(crate) last_error: Option<String>,
    /// When the set should be refreshed after the last good fetch
    /// (`max-age` within the bounds).
    pub(crate) next_refresh: Duration,
}

/// The single-flight gate: held for the duration of a fetch. Only
/// unknown-`kid` re-fetches are rate-limited: a rotation right after a
/// scheduled refresh still gets its fetch.
struct Gate {
    last_refetch: Option<Instant>,
}

pub(crate) struct JwksCache {
    provider: String,
    source: Source,
    algorithms: Vec<Algorithm>,
    min_refresh: Duration,
    max_refresh: Duration,
    min_refetch: Duration,
    timeout: Duration,
    state: ArcSwap<State>,
    gate: tokio::sync::Mutex<Gate>,
    fetches: AtomicU64,
}

impl JwksCache {
    pub(crate) fn new(
        provider: &str,
        source: Source,
        config: &JwksConfig,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        // Never a busy loop, whatever the config says; and the upper bound
        // is never below the (raised) lower one.
        let min_refresh = config.min_refresh.max(MIN_REFRESH_FLOOR);
        let max_refresh = config.max_refresh.max(min_refresh);
        JwksCache {
            provider: provider.to_owned(),
            source,
            algorithms,
            min_refresh,
            max_refresh,
            min_refetch: config.min_refetch_interval,
            timeout: config.timeout,
            state: ArcSwap::from_pointee(State {
                keys: None,
                generation: 0,
                fetched_at: None,
                last_error: None,
                next_refresh: min_refresh,
            }),
            gate: tokio::sync::Mutex::new(Gate { last_refetch: None }),
            fetches: AtomicU64::new(0),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// When a request refused for want of keys may try again: the next
    /// re-fetch it could cause (at least a second).
    pub(crate) fn retry_after(&self) -> Duration {
        self.min_refetch.max(Duration::from_secs(1))
    }

    /// The longest refresh period (at least the 1 s floor).
    pub(crate) fn max_refresh(&self) -> Duration {
        self.max_refresh
    }

    /// Fetch attempts so far.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Loads a file source now (a bad file is a build error, not a 503).
    pub(crate) fn load_file_now(&self) -> Result<(), String> {
        let Source::File(path) = &self.source else {
            return Ok(());
        };
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let set = KeySet::parse(&bytes, &self.algorithms)?;
        self.store_ok(set, self.max_refresh);
        Ok(())
    }

    /// Re-fetches for a token whose `kid` the set of generation `seen`
    /// does not know: one fetch for any number of concurrent callers, and
    /// none if the last attempt is less than `min_refetch_interval` ago.
    /// Returns the state afterwards.
    pub(crate) async fn refetch(&self, seen: u64) -> Arc<State> {
        let mut gate = self.gate.lock().await;
        let now = self.state();
        if now.generation != seen {
            // Someone fetched while this caller waited.
            return now;
        }
        if gate
            .last_refetch
            .is_some_and(|t| t.elapsed() < self.min_refetch)
        {
            return now;
        }
        gate.last_refetch = Some(Instant::now());
        self.fetch_and_store().await;
        self.state()
    }

    /// The scheduled refresh of the set of generation `seen`: fetches
    /// (after any fetch in flight) unless another fetch succeeded since,
    /// and returns the delay until the next one.
    async fn refresh(&self, seen: u64) -> Duration {
        let _gate = self.gate.lock().await;
        let now = self.state();
        if now.generation != seen {
            return now.next_refresh;
        }
        match self.fetch_and_store().await {
            true => self.state().next_refresh,
            false => self.min_refresh,
        }
    }

    /// Fetches and stores; on failure the last good set stays and the
    /// error is recorded.
    async fn fetch_and_store(&self) -> bool {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        let parsed = fetched
            .and_then(|(bytes, max_age)| Ok((KeySet::parse(&bytes, &self.algorithms)?, max_age)));
        metrics::counter!(
            "msp_gateway_jwks_fetches_total",
            "provider" => self.provider.clone(),
            "result" => if parsed.is_ok() { "ok" } else { "error" },
        )
        .increment(1);
        match parsed {
            Ok((set, max_age)) => {
                // `max` then `min`, not `clamp`: never a panic, even if
                // the bounds were ever inverted.
                let next = max_age
                    .unwrap_or(self.max_refresh)
                    .min(self.max_refresh)
                    .max(self.min_refresh);
                self.store_ok(set, next);
                true
            }
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "JWKS fetch failed; keeping the last good key set");
                let prev = self.state();
                self.state.store(Arc::new(State {
                    keys: prev.keys.clone(),
                    generation: prev.generation,
                    fetched_at: prev.fetched_at,
                    last_error: Some(e),
                    next_refresh: prev.next_refresh,
                }));
                false
            }
        }
    }

    fn store_ok(&self, set: KeySet, next_refresh: Duration) {
        let prev = self.state();
        self.state.store(Arc::new(State {
            keys: Some(Arc::new(set)),
            generation: prev.generation.wrapping_add(1),
            fetched_at: Some(SystemTime::now()),
            last_error: None,
            next_refresh,
        }));
    }

    async fn fetch(&self) -> Result<(Bytes, Option<Duration>), String> {
        match &self.source {
            Source::File(path) => {
                let path = path.clone();
                let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok((Bytes::from(bytes), None))
            }
            Source::Url { uri, client } => {
                let req = Request::get(uri.clone())
                    .header(ACCEPT, "application/jwk-set+json, application/json")
                    .body(Empty::<Bytes>::new())
                    .map_err(|e| e.to_string())?;
                let res = client
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| e.to_string())?;
                if !res.status().is_success() {
                    return Err(format!("HTTP {}", res.status()));
                }
                let max_age = max_age(res.headers());
                let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok((body, max_age))
            }
        }
    }
}

/// Starts the background refresh of `cache`: the first fetch after
/// `first` (zero for a URL; a file was loaded already), then on `max-age`
/// within the bounds — skipped when another fetch (an unknown `kid`)
/// succeeded meanwhile. The task ends once the cache is dropped (a reload
/// replaced it).
pub(crate) fn spawn_refresher(cache: &Arc<JwksCache>, first: Duration) {
    let weak: Weak<JwksCache> = Arc::downgrade(cache);
    let mut seen = cache.state().generation;
    tokio::spawn(async move {
        let mut delay = first;
        loop {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let Some(cache) = weak.upgrade() else {
                return;
            };
            delay = cache.refresh(seen).await;
            seen = cache.state().generation;
        }
    });
}

/// The freshness a JWKS response allows: `max-age` (`s-maxage` is for
/// shared caches; the gateway is the client here), zero for `no-cache` /
/// `no-store`; directive names in any case, values possibly quoted.
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut out = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok())
            {
                out = Some(Duration::from_secs(secs));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, http::HeaderValue::from_static(v));
        h
    }

    #[test]
    fn max_age_is_read_in_any_case_and_quoted() {
        assert_eq!(
            max_age(&cc("public, max-age=300")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            max_age(&cc("Max-Age=\"60\"")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age(&cc("no-cache")), Some(Duration::ZERO));
        assert_eq!(max_age(&cc("public")), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let dir = std::env::temp_dir().join(format!("msp-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("jwks.json");
        std::fs::write(&path, br#"{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA","kid":"a"}]}"#).expect("write JWKS");
        let config = JwksConfig::file(&path).min_refetch_interval(Duration::from_secs(30));
        let cache = JwksCache::new("p", Source::File(path), &config, vec![Algorithm::HS256]);
        cache.load_file_now().expect("a good file");
        let g = cache.state().generation;
        assert_eq!(cache.refetch(g).await.generation, g + 1);
        assert_eq!(cache.fetches(), 1);
        // Within the interval: no fetch.
        assert_eq!(cache.refetch(g + 1).await.generation, g + 1);
        assert_eq!(cache.fetches(), 1);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(cache.refetch(g + 1).await.generation, g + 2);
        assert_eq!(cache.fetches(), 2);
        // A stale `seen` generation means someone already fetched.
        assert_eq!(cache.refetch(g).await.generation, g + 2);
        assert_eq!(cache.fetches(), 2);
    }
}
