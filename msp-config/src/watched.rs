//! [`Watched<T>`]: the live configuration — a lock-free current value and a
//! stream of changes, reloaded from files, remote sources and `reload()`.
//!
//! - [`Watched::get`] returns the current `Arc<T>` from an
//!   [`ArcSwap`]: a few nanoseconds, no lock.
//! - [`Watched::subscribe`] gives a broadcast receiver of [`ConfigEvent`]s:
//!   each accepted new value with its [`AuditRecord`], and each **rejected**
//!   reload with its error.
//! - Reload triggers: changes in the configuration directories (watched as
//!   directories, so Kubernetes ConfigMap `..data` symlink swaps are seen;
//!   debounced, 50 ms by default), each [`Remote`]'s
//!   change feed (etcd watch, HTTP polling, retried with backoff and
//!   jitter), and [`Watched::reload`].
//! - A reload that fails to parse, to deserialize, or a validation hook, is
//!   rejected: the last good value stays, the error is logged, counted in
//!   `msp_config_reload_errors_total{app}` and sent as
//!   [`ConfigEvent::Rejected`]. Accepted changes count in
//!   `msp_config_reloads_total{app}`, go to the audit sinks and are sent as
//!   [`ConfigEvent::Updated`]. A reload that changes no value does nothing.
//!   The directory itself may be deleted and recreated (a deploy replacing
//!   it): the watch follows the new directory, and while it is missing the
//!   last good value stays. Watcher failures arrive as
//!   [`ConfigEvent::WatchFailed`] (and count in
//!   `msp_config_watch_errors_total`).
//!
//! Background tasks stop when the last clone of the `Watched` is dropped.
//!
//! # Example
//!
//! ```
//! use msp_config::{ConfigEvent, Loader, Watched};
//! use std::time::Duration;
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Cfg { workers: u32 }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let file = dir.path().join("app.yaml");
//! std::fs::write(&file, "workers: 4\n")?;
//!
//! let cfg = Watched::<Cfg>::builder(Loader::new("app").dir(dir.path()))
//!     .validate(|c: &Cfg| if c.workers > 0 { Ok(()) } else { Err("workers must be > 0".into()) })
//!     .start()
//!     .await?;
//! assert_eq!(cfg.get().workers, 4);
//!
//! let mut events = cfg.subscribe();
//! std::fs::write(&file, "workers: 8\n")?;
//! loop {
//!     match tokio::time::timeout(Duration::from_secs(10), events.recv()).await?? {
//!         ConfigEvent::Updated { value, .. } if value.workers == 8 => break,
//!         _ => continue,
//!     }
//! }
//! assert_eq!(cfg.get().workers, 8);
//!
//! // Rejected: the last good value stays.
//! std::fs::write(&file, "workers: 0\n")?;
//! assert!(cfg.reload().await.is_err());
//! assert_eq!(cfg.get().workers, 8);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub(crate) mod files;

use self::files::watch_dirs;
use arc_swap::ArcSwap;
use msp_core::BoxError;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::audit::{AuditRecord, AuditSink, Trigger};
use crate::error::ConfigError;
use crate::loader::{FlatEntry, Loader};
use crate::remote::{Remote, RemoteData};

type Validator<T> = Arc<dyn Fn(&T) -> Result<(), BoxError> + Send + Sync>;

/// A change to a [`Watched`] configuration.
#[non_exhaustive]
pub enum ConfigEvent<T> {
    /// A new value was accepted.
    Updated {
        /// The new value (what [`Watched::get`] now returns).
        value: Arc<T>,
        /// What changed.
        audit: Arc<AuditRecord>,
    },
    /// A reload was rejected; the previous value stays.
    Rejected {
        /// What caused the reload.
        trigger: Trigger,
        /// Why it was rejected.
        error: Arc<ConfigError>,
    },
    /// The file watcher reported an error (a [`ConfigError::Watch`]):
    /// changes may go unseen until it recovers. The current value stays.
    WatchFailed {
        /// What the watcher said.
        error: Arc<ConfigError>,
    },
}

impl<T> Clone for ConfigEvent<T> {
    fn clone(&self) -> Self {
        match self {
            ConfigEvent::Updated { value, audit } => ConfigEvent::Updated {
                value: value.clone(),
                audit: audit.clone(),
            },
            ConfigEvent::Rejected { trigger, error } => ConfigEvent::Rejected {
                trigger: trigger.clone(),
                error: error.clone(),
            },
            ConfigEvent::WatchFailed { error } => ConfigEvent::WatchFailed {
                error: error.clone(),
            },
        }
    }
}

impl<T> fmt::Debug for ConfigEvent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigEvent::Updated { audit, .. } => f
                .debug_struct("Updated")
                .field("audit", audit)
                .finish_non_exhaustive(),
            ConfigEvent::Rejected { trigger, error } => f
                .debug_struct("Rejected")
                .field("trigger", trigger)
                .field("error", error)
                .finish(),
            ConfigEvent::WatchFailed { error } => {
                f.debug_struct("WatchFailed").field("error", error).finish()
            }
        }
    }
}

/// What a [`Watched::reload`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// A new value was accepted.
    Changed(Arc<AuditRecord>),
    /// The sources give the same values as before.
    Unchanged,
}

/// A live configuration value. Cheap to clone (all clones share one value).
pub struct Watched<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Watched {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("app", &self.shared.loader.app())
            .finish_non_exhaustive()
    }
}

struct Shared<T> {
    current: ArcSwap<T>,
    events: broadcast::Sender<ConfigEvent<T>>,
    state: tokio::sync::Mutex<State>,
    loader: Loader,
    validators: Vec<Validator<T>>,
    sinks: Vec<Arc<dyn AuditSink>>,
    tasks: std::sync::Mutex<Vec<AbortHandle>>,
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let tasks = match self.tasks.get_mut() {
            Ok(t) => std::mem::take(t),
            Err(p) => std::mem::take(p.into_inner()),
        };
        for t in tasks {
            t.abort();
        }
    }
}

struct State {
    flat: BTreeMap<String, FlatEntry>,
    remote: Vec<Option<Arc<RemoteData>>>,
}

/// Builds a [`Watched`]; from [`Watched::builder`].
#[must_use]
pub struct WatchedBuilder<T> {
    loader: Loader,
    validators: Vec<Validator<T>>,
    sinks: Vec<Arc<dyn AuditSink>>,
    watch_files: bool,
    watch_remotes: bool,
    debounce: Duration,
    capacity: usize,
}

impl<T> fmt::Debug for WatchedBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedBuilder")
            .field("loader", &self.loader)
            .field("validators", &self.validators.len())
            .field("sinks", &self.sinks.len())
            .field("watch_files", &self.watch_files)
            .field("watch_remotes", &self.watch_remotes)
            .field("debounce", &self.debounce)
            .finish()
    }
}

/// The default quiet time before a file change is reloaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

impl<T> Watched<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// Starts building a live configuration from `loader`.
    pub fn builder(loader: Loader) -> WatchedBuilder<T> {
        WatchedBuilder {
            loader,
            validators: Vec::new(),
            sinks: Vec::new(),
            watch_files: true,
            watch_remotes: true,
            debounce: DEFAULT_DEBOUNCE,
            capacity: 64,
        }
    }

    /// Reloads now: refetches every remote source (one that fails keeps its
    /// last entries), re-reads the files and environment, validates.
    ///
    /// # Errors
    ///
    /// The reason the new configuration was rejected (also sent as
    /// [`ConfigEvent::Rejected`]); the current value is unchanged.
    pub async fn reload(&self) -> Result<ReloadOutcome, Arc<ConfigError>> {
        self.shared.apply(Trigger::Manual, Update::Refetch).await
    }
}

impl<T> Watched<T> {
    /// The current value.
    #[inline]
    pub fn get(&self) -> Arc<T> {
        self.shared.current.load_full()
    }

    /// The current value without touching the reference count (even
    /// cheaper than [`get`](Watched::get); do not hold the guard long).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<T>> {
        self.shared.current.load()
    }

    /// A receiver of every change from now on. A receiver that falls more
    /// than the channel capacity (default 64) behind gets
    /// `RecvError::Lagged` and continues with newer events.
    pub fn subscribe(&self) -> broadcast::Receiver<ConfigEvent<T>> {
        self.shared.events.subscribe()
    }

    /// The application name.
    pub fn app(&self) -> &str {
        self.shared.loader.app()
    }
}

impl<T> WatchedBuilder<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// Adds a validation hook; a value it rejects is never published. Runs
    /// on the initial load too.
    pub fn validate<F>(mut self, f: F) -> Self
    where
        F: Fn(&T) -> Result<(), BoxError> + Send + Sync + 'static,
    {
        self.validators.push(Arc::new(f));
        self
    }

    /// Adds an audit sink (see [`audit`](crate::audit)).
    pub fn audit(mut self, sink: impl AuditSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Whether to watch the configuration directories (default yes).
    pub fn watch_files(mut self, on: bool) -> Self {
        self.watch_files = on;
        self
    }

    /// Whether to follow the remote sources' change feeds (default yes).
    pub fn watch_remotes(mut self, on: bool) -> Self {
        self.watch_remotes = on;
        self
    }

    /// The quiet time after the last file event before reloading (default
    /// [`DEFAULT_DEBOUNCE`]). A burst is reloaded after at most 10 × this.
    pub fn debounce(mut self, quiet: Duration) -> Self {
        self.debounce = quiet;
        self
    }

    /// The change channel's capacity (default 64).
    pub fn channel_capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }

    /// Loads (fetching remote sources with their start-up policy),
    /// validates, records the initial audit record, and starts watching.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`] of the initial load or validation, or
    /// [`ConfigError::Watch`] when a directory cannot be watched.
    pub async fn start(self) -> Result<Watched<T>, ConfigError> {
        let mut remote = Vec::with_capacity(self.loader.remotes.len());
        for r in &self.loader.remotes {
            remote.push(Some(Arc::new(r.initial_fetch().await?)));
        }
        let snapshot = self.loader.snapshot(&remote)?;
        let value: T = snapshot.extract()?;
        for v in &self.validators {
            v(&value).map_err(ConfigError::Validation)?;
        }
        let record = AuditRecord::diff(
            self.loader.app(),
            Trigger::Initial,
            &BTreeMap::new(),
            &snapshot.flat,
        );
        for s in &self.sinks {
            s.record(&record);
        }
        let (events, _) = broadcast::channel(self.capacity);
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(value),
            events,
            state: tokio::sync::Mutex::new(State {
                flat: snapshot.flat,
                remote,
            }),
            validators: self.validators,
            sinks: self.sinks,
            tasks: std::sync::Mutex::new(Vec::new()),
            watcher: std::sync::Mutex::new(None),
            loader: self.loader,
        });
        let mut tasks = Vec::new();
        if self.watch_files
            && let Some((watcher, task)) = watch_dirs(&shared, self.debounce)?
        {
            if let Ok(mut w) = shared.watcher.lock() {
                *w = Some(watcher);
            }
            tasks.push(task);
        }
        if self.watch_remotes {
            for (i, r) in shared.loader.remotes.iter().enumerate() {
                let task = tokio::spawn(drive_remote(Arc::downgrade(&shared), i, r.clone()));
                tasks.push(task.abort_handle());
            }
        }
        if let Ok(mut t) = shared.tasks.lock() {
            t.extend(tasks);
        }
        Ok(Watched { shared })
    }
}

/// How a reload treats remote data.
enum Update {
    /// Use the remote entries already held.
    Keep,
    /// Fetch every remote again.
    Refetch,
    /// Replace one remote's entries (skip if equal).
    One(usize, RemoteData),
}

impl<T> Shared<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// Reports a watcher failure: logged, counted, sent as
    /// [`ConfigEvent::WatchFailed`]; the current value stays.
    fn watch_failed(&self, error: ConfigError) {
        tracing::warn!(app = self.loader.app(), %error, "config file watch failed; changes may go unseen");
        metrics::counter!("msp_config_watch_errors_total", "app" => self.loader.app().to_owned())
            .increment(1);
        let _ = self.events.send(ConfigEvent::WatchFailed {
            error: Arc::new(error),
        });
    }

    async fn apply(
        &self,
        trigger: Trigger,
        update: Update,
    ) -> Result<ReloadOutcome, Arc<ConfigError>> {
        let mut state = self.state.lock().await;
        match update {
            Update::Keep => {}
            Update::Refetch => {
                for (i, r) in self.loader.remotes.iter().enumerate() {
                    match r.fetch().await {
                        Ok(d) => state.remote[i] = Some(Arc::new(d)),
                        Err(e) => tracing::warn!(
                            app = %self.loader.app(), source = %r.name(), error = %e,
                            "config source unreachable; keeping its last values"
                        ),
                    }
                }
            }
            Update::One(i, data) => {
                if state.remote.get(i).and_then(Option::as_deref) == Some(&data) {
                    return Ok(ReloadOutcome::Unchanged);
                }
                if let Some(slot) = state.remote.get_mut(i) {
                    *slot = Some(Arc::new(data));
                }
            }
        }
        let built = self.loader.snapshot(&state.remote).and_then(|snap| {
            let value: T = snap.extract()?;
            for v in &self.validators {
                v(&value).map_err(ConfigError::Validation)?;
            }
            Ok((snap, value))
        });
        let app = self.loader.app().to_owned();
        match built {
            Err(e) => {
                let error = Arc::new(e);
                metrics::counter!("msp_config_reload_errors_total", "app" => app.clone())
                    .increment(1);
                tracing::error!(app = %app, trigger = %trigger, error = %error, "config reload rejected; keeping the last good value");
                let _ = self.events.send(ConfigEvent::Rejected {
                    trigger,
                    error: error.clone(),
                });
                Err(error)
            }
            Ok((snap, value)) => {
                let record = AuditRecord::diff(&app, trigger, &state.flat, &snap.flat);
                if record.is_empty() {
                    return Ok(ReloadOutcome::Unchanged);
                }
                state.flat = snap.flat;
                let value = Arc::new(value);
                self.current.store(value.clone());
                drop(state);
                metrics::counter!("msp_config_reloads_total", "app" => app.clone()).increment(1);
                tracing::info!(app = %app, "{record}");
                for s in &self.sinks {
                    s.record(&record);
                }
                let audit = Arc::new(record);
                let _ = self.events.send(ConfigEvent::Updated {
                    value,
                    audit: audit.clone(),
                });
                Ok(ReloadOutcome::Changed(audit))
            }
        }
    }
}

async fn drive_remote<T>(shared: Weak<Shared<T>>, index: usize, remote: Remote)
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let source = remote.source().clone();
    let name = source.name();
    let mut delays = remote.retry_policy().iter();
    let max = remote.retry_policy().max_delay();
    loop {
        let failure = match source.changed().await {
            Ok(()) => match remote.fetch().await {
                Ok(data) => {
                    delays.reset();
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let _ = shared
                        .apply(Trigger::Remote(name.clone()), Update::One(index, data))
                        .await;
                    None
                }
                Err(e) => Some(e),
            },
            Err(e) => Some(e),
        };
        if shared.strong_count() == 0 {
            return;
        }
        if let Some(e) = failure {
            let delay = delays.next().unwrap_or(max);
            tracing::warn!(source = %name, error = %e, retry_in = ?delay, "config source failing; serving its last values");
            tokio::time::sleep(delay).await;
        }
    }
}
