//! Remote configuration sources: etcd (feature `etcd`) and HTTP config
//! servers (feature `http`), with a start-up policy and a local cache.
//!
//! A [`RemoteSource`] fetches a flat list of `key → value` entries and tells
//! when they may have changed (an etcd watch event, an HTTP poll tick). A
//! [`Remote`] wraps a source with what to do when it is down:
//!
//! - at start-up, [`Startup::FailFast`] (optionally after retries with
//!   backoff) or [`Startup::UseCache`], which starts from the copy written to
//!   the cache file after each successful fetch;
//! - while running ([`Watched`](crate::Watched)), a failing source never
//!   changes the configuration: the last fetched entries keep being served
//!   and the source is retried with backoff and jitter.
//!
//! # Example
//!
//! A source of your own (here a fixed map) plugs in like etcd or the config
//! server:
//!
//! ```
//! use futures_util::future::BoxFuture;
//! use msp_config::remote::{Remote, RemoteData, RemoteSource, Startup};
//! use msp_config::Loader;
//! use msp_core::BoxError;
//!
//! #[derive(Debug)]
//! struct Fixed;
//! impl RemoteSource for Fixed {
//!     fn name(&self) -> String { "fixed".into() }
//!     fn fetch(&self) -> BoxFuture<'_, Result<RemoteData, BoxError>> {
//!         Box::pin(async {
//!             let mut data = RemoteData::default();
//!             data.push("db.pool.max_size", 42.into(), "max");
//!             Ok(data)
//!         })
//!     }
//!     fn changed(&self) -> BoxFuture<'_, Result<(), BoxError>> {
//!         Box::pin(std::future::pending())
//!     }
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Pool { max_size: u32 }
//! #[derive(serde::Deserialize)]
//! struct Db { pool: Pool }
//! #[derive(serde::Deserialize)]
//! struct Cfg { db: Db }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), msp_config::ConfigError> {
//! let cfg: Cfg = Loader::new("shop")
//!     .no_files()
//!     .remote(Remote::new(Fixed).startup(Startup::FailFast))
//!     .load()
//!     .await?;
//! assert_eq!(cfg.db.pool.max_size, 42);
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Map, Value, ValueKind};
use futures_util::future::BoxFuture;
use msp_core::BoxError;
use msp_core::backoff::{Backoff, Jitter};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::error::{ConfigError, Origin};

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod sse;

#[cfg(feature = "etcd")]
pub use self::etcd::EtcdSource;
#[cfg(feature = "http")]
pub use self::http::HttpSource;

/// One key from a remote source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteEntry {
    /// The dotted config path (`db.pool.max_size`, `servers[0]`).
    pub key: String,
    /// The value (a JSON scalar usually; strings convert to numbers and
    /// booleans on extraction).
    pub value: serde_json::Value,
    /// Where it lives at the source (the etcd key, the property source's
    /// name), shown in errors.
    pub origin: String,
}

/// Everything a remote source returned in one fetch, lowest precedence
/// first (a later entry for the same key wins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteData {
    /// The entries.
    pub entries: Vec<RemoteEntry>,
}

impl RemoteData {
    /// Appends an entry.
    pub fn push(
        &mut self,
        key: impl Into<String>,
        value: serde_json::Value,
        origin: impl Into<String>,
    ) {
        self.entries.push(RemoteEntry {
            key: key.into(),
            value,
            origin: origin.into(),
        });
    }

    /// The entries as a config-rs map keyed by path, with origins.
    pub(crate) fn to_map(&self, source: &str) -> Map<String, Value> {
        let mut map = Map::new();
        for e in &self.entries {
            let origin = Origin::Remote {
                source: source.to_owned(),
                key: e.origin.clone(),
            }
            .encode();
            map.insert(e.key.clone(), json_to_value(&e.value, &origin));
        }
        map
    }
}

fn json_to_value(v: &serde_json::Value, origin: &String) -> Value {
    let kind = match v {
        serde_json::Value::Null => ValueKind::Nil,
        serde_json::Value::Bool(b) => ValueKind::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ValueKind::I64(i),
            (None, Some(u), _) => ValueKind::U64(u),
            (_, _, Some(f)) => ValueKind::Float(f),
            _ => ValueKind::String(n.to_string()),
        },
        serde_json::Value::String(s) => ValueKind::String(s.clone()),
        serde_json::Value::Array(a) => {
            ValueKind::Array(a.iter().map(|v| json_to_value(v, origin)).collect())
        }
        serde_json::Value::Object(o) => ValueKind::Table(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v, origin)))
                .collect(),
        ),
    };
    Value::new(Some(origin), kind)
}

/// A remote configuration store.
///
/// Implementations: `EtcdSource` (feature `etcd`), `HttpSource`
/// (feature `http`), or your own.
pub trait RemoteSource: fmt::Debug + Send + Sync + 'static {
    /// A short description for logs and errors (`etcd http://…/config/shop/`).
    fn name(&self) -> String;

    /// Fetches the current entries.
    fn fetch(&self) -> BoxFuture<'_, Result<RemoteData, BoxError>>;

    /// Resolves when the entries may have changed (a watch event, a poll
    /// interval elapsed), or fails when the change feed broke (it is
    /// retried with backoff). [`Watched`](crate::Watched) calls it in a loop
    /// and fetches after each `Ok`; a fetch that returns the same entries
    /// changes nothing.
    fn changed(&self) -> BoxFuture<'_, Result<(), BoxError>>;
}

/// What to do when a remote source cannot be reached at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Startup {
    /// Fail (after the start-up retries, if any).
    #[default]
    FailFast,
    /// Start from the cached copy of the last successful fetch (fails if
    /// there is none).
    UseCache,
}

/// A remote source with its start-up policy, cache file and retry backoff.
#[derive(Clone)]
#[must_use]
pub struct Remote {
    source: Arc<dyn RemoteSource>,
    startup: Startup,
    cache: Option<PathBuf>,
    startup_retry: Option<Backoff>,
    retry: Backoff,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("source", &self.source.name())
            .field("startup", &self.startup)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Wraps a source: fail fast at start-up, no cache, and while running
    /// retry a failed watch/poll after 500 ms doubling up to 30 s with full
    /// jitter.
    pub fn new(source: impl RemoteSource) -> Self {
        Remote::from_arc(Arc::new(source))
    }

    /// Wraps a shared source.
    pub fn from_arc(source: Arc<dyn RemoteSource>) -> Self {
        let retry = Backoff::builder()
            .initial(Duration::from_millis(500))
            .max_delay(Duration::from_secs(30))
            .jitter(Jitter::Full)
            .build()
            .unwrap_or_default();
        Remote {
            source,
            startup: Startup::FailFast,
            cache: None,
            startup_retry: None,
            retry,
        }
    }

    /// What to do when the source is unreachable at start-up.
    pub fn startup(mut self, startup: Startup) -> Self {
        self.startup = startup;
        self
    }

    /// Retries the start-up fetch with these delays before applying the
    /// [`Startup`] policy (Spring Cloud Config's client retries 6 times,
    /// 1 s × 1.1).
    pub fn startup_retry(mut self, backoff: Backoff) -> Self {
        self.startup_retry = Some(backoff);
        self
    }

    /// Writes every successful fetch to `path` (JSON, atomically replaced)
    /// and reads it with [`Startup::UseCache`].
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache = Some(path.into());
        self
    }

    /// The backoff between attempts after the source failed while running.
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.retry = backoff;
        self
    }

    /// The source's name.
    pub fn name(&self) -> String {
        self.source.name()
    }

    pub(crate) fn source(&self) -> &Arc<dyn RemoteSource> {
        &self.source
    }

    pub(crate) fn retry_policy(&self) -> &Backoff {
        &self.retry
    }

    /// Fetches once and refreshes the cache on success.
    pub(crate) async fn fetch(&self) -> Result<RemoteData, BoxError> {
        let data = self.source.fetch().await?;
        if let Some(path) = &self.cache
            && let Err(e) = write_cache(path, &data).await
        {
            tracing::warn!(source = %self.source.name(), cache = %path.display(), error = %e, "cannot write config cache");
        }
        Ok(data)
    }

    /// The start-up fetch: retries, then the [`Startup`] policy.
    pub(crate) async fn initial_fetch(&self) -> Result<RemoteData, ConfigError> {
        let mut delays = self.startup_retry.as_ref().map(|b| b.iter());
        let err = loop {
            match self.fetch().await {
                Ok(data) => return Ok(data),
                Err(e) => match delays.as_mut().and_then(Iterator::next) {
                    Some(d) => {
                        tracing::warn!(source = %self.source.name(), error = %e, retry_in = ?d, "config source unreachable, retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => break e,
                },
            }
        };
        match (self.startup, &self.cache) {
            (Startup::FailFast, _) => Err(ConfigError::Remote {
                source_name: self.source.name(),
                error: err,
            }),
            (Startup::UseCache, None) => Err(ConfigError::NoCache {
                source_name: self.source.name(),
                error: err,
                cache: PathBuf::new(),
                cache_error: "no cache file configured".to_owned(),
            }),
            (Startup::UseCache, Some(path)) => match read_cache(path).await {
                Ok(data) => {
                    tracing::warn!(source = %self.source.name(), error = %err, cache = %path.display(), "config source unreachable, starting from the cached copy");
                    Ok(data)
                }
                Err(cache_error) => Err(ConfigError::NoCache {
                    source_name: self.source.name(),
                    error: err,
                    cache: path.clone(),
                    cache_error,
                }),
            },
        }
    }
}

async fn write_cache(path: &Path, data: &RemoteData) -> Result<(), BoxError> {
    let json = serde_json::to_vec_pretty(data)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::write(&tmp, json).await?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(())
}

async fn read_cache(path: &Path) -> Result<RemoteData, String> {
    let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}
