//! Watching the config directories: file events debounced into reloads,
//! a deleted and recreated directory watched again, watcher failures
//! reported.

use super::{Shared, Update};
use crate::audit::Trigger;
use crate::error::ConfigError;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub(crate) fn relevant(kind: &EventKind) -> bool {
    match kind {
        // Our own reads show up as opens and closes; only writes matter.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// What the file watcher tells the debounce task.
enum WatchMsg {
    /// One of the app's files (or a Kubernetes `..data` entry) changed.
    File(PathBuf),
    /// A config directory itself appeared or disappeared (seen through its
    /// parent's watch).
    Dir(PathBuf),
    /// The watcher failed.
    Failed(ConfigError),
}

/// Watches every existing config directory (not recursively), and each
/// one's parent for the directory itself being deleted and recreated (a
/// deploy that replaces the whole directory), then spawns the debounce
/// task.
pub(super) fn watch_dirs<T>(
    shared: &Arc<Shared<T>>,
    debounce: Duration,
) -> Result<Option<(notify::RecommendedWatcher, AbortHandle)>, ConfigError>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let dirs: Vec<PathBuf> = shared
        .loader
        .dirs()
        .iter()
        .filter(|d| d.is_dir())
        .cloned()
        .collect();
    for d in shared.loader.dirs() {
        if !d.is_dir() {
            tracing::debug!(dir = %d.display(), "config directory does not exist; not watching it");
        }
    }
    if dirs.is_empty() {
        return Ok(None);
    }
    let app = shared.loader.app().to_owned();
    let watched = dirs.clone();
    let (tx, rx) = mpsc::unbounded_channel::<WatchMsg>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if relevant(&ev.kind) => {
                for p in ev.paths {
                    if watched.contains(&p) {
                        let _ = tx.send(WatchMsg::Dir(p));
                        continue;
                    }
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // The app's files, and Kubernetes' `..data` / `..2024_…` entries.
                    if name.starts_with(&app) || name.starts_with("..") {
                        let _ = tx.send(WatchMsg::File(p));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let path = e.paths.first().cloned().unwrap_or_default();
                let _ = tx.send(WatchMsg::Failed(ConfigError::Watch {
                    path,
                    message: e.to_string(),
                }));
            }
        })
        .map_err(|e| ConfigError::Watch {
            path: dirs[0].clone(),
            message: e.to_string(),
        })?;
    for d in &dirs {
        watcher
            .watch(d, RecursiveMode::NonRecursive)
            .map_err(|e| ConfigError::Watch {
                path: d.clone(),
                message: e.to_string(),
            })?;
        // Best effort: without the parent's watch a recreated directory is
        // only noticed on an explicit reload.
        if let Some(parent) = d.parent().filter(|p| p.is_dir())
            && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            tracing::debug!(dir = %parent.display(), error = %e, "cannot watch the config directory's parent");
        }
    }
    let task = tokio::spawn(debounce_files(Arc::downgrade(shared), rx, debounce));
    Ok(Some((watcher, task.abort_handle())))
}

/// A config directory was (re)created: watch it again (its old watch died
/// with the old directory).
fn rewatch<T>(shared: &Shared<T>, dir: &Path) -> Result<(), ConfigError> {
    let mut guard = shared
        .watcher
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(watcher) = guard.as_mut() else {
        return Ok(());
    };
    // The old watch may linger on some platforms; a second one is an error
    // there, so drop it first (ignoring "not watched").
    let _ = watcher.unwatch(dir);
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| ConfigError::Watch {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })
}

async fn debounce_files<T>(
    shared: Weak<Shared<T>>,
    mut rx: mpsc::UnboundedReceiver<WatchMsg>,
    quiet: Duration,
) where
    T: DeserializeOwned + Send + Sync + 'static,
{
    while let Some(first) = rx.recv().await {
        let mut last = match first {
            WatchMsg::File(p) => p,
            WatchMsg::Dir(dir) => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if !dir.is_dir() {
                    // Deleted: keep the last good value until it is back.
                    tracing::warn!(dir = %dir.display(), "config directory removed; keeping the current configuration");
                    continue;
                }
                if let Err(error) = rewatch(&shared, &dir) {
                    shared.watch_failed(error);
                    continue;
                }
                tracing::info!(dir = %dir.display(), "config directory recreated; watching it again");
                dir
            }
            WatchMsg::Failed(error) => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.watch_failed(error);
                continue;
            }
        };
        let now = tokio::time::Instant::now();
        let cap = now
            .checked_add(quiet.saturating_mul(10))
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        loop {
            match tokio::time::timeout(quiet, rx.recv()).await {
                Ok(Some(msg)) => {
                    match msg {
                        WatchMsg::File(p) => last = p,
                        WatchMsg::Dir(dir) => {
                            let Some(shared) = shared.upgrade() else {
                                return;
                            };
                            if dir.is_dir() {
                                match rewatch(&shared, &dir) {
                                    Ok(()) => last = dir,
                                    Err(error) => shared.watch_failed(error),
                                }
                            }
                        }
                        WatchMsg::Failed(error) => {
                            let Some(shared) = shared.upgrade() else {
                                return;
                            };
                            shared.watch_failed(error);
                        }
                    }
                    if tokio::time::Instant::now() >= cap {
                        break;
                    }
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A burst that ends with the directory gone (deleted, not yet
        // recreated) must not load the defaults over the last good value.
        let dir = if shared.loader.dirs().contains(&last) {
            Some(last.as_path())
        } else {
            last.parent()
        };
        if dir.is_some_and(|d| !d.is_dir()) {
            tracing::warn!(path = %last.display(), "config directory missing; keeping the current configuration");
            continue;
        }
        let _ = shared.apply(Trigger::File(last), Update::Keep).await;
    }
}
