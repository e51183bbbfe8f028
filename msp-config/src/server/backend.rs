//! Where the config server reads its files: the [`Backend`] trait and the
//! directory backend ([`DirBackend`]). The git backend is
//! [`GitBackend`](super::GitBackend) (feature `git`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

use super::error::ConfigServerError;

/// A store of configuration files, one tree per label.
///
/// The server calls [`open`](Backend::open) on tokio's blocking pool for
/// each request, and reads the application's and the shared files from the
/// returned [`Snapshot`]. [`changes`](Backend::changes) drives the change
/// stream: its value is bumped whenever files may have changed (the server
/// then rebuilds each watched environment and tells clients only when it
/// really changed).
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    /// Opens `label` (already validated: letters, digits, `-`, `_`, `.`,
    /// parts joined with `/`), or the backend's default when `None`.
    ///
    /// # Errors
    ///
    /// [`ConfigServerError::NoSuchLabel`] when the label does not exist,
    /// [`ConfigServerError::Backend`] when the store cannot be read.
    fn open(&self, label: Option<&str>) -> Result<Box<dyn Snapshot>, ConfigServerError>;

    /// A receiver whose value changes whenever the files may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// One label's files at one version.
pub trait Snapshot: Send {
    /// The version served as the environment's `version` (a commit id), if
    /// the backend has one.
    fn version(&self) -> Option<String>;

    /// Reads `file` (`shop-prod.yaml`) at the label's root; `Ok(None)` when
    /// there is no such file.
    ///
    /// # Errors
    ///
    /// [`ConfigServerError::File`] when the file exists but cannot be read.
    fn read(&self, file: &str) -> Result<Option<String>, ConfigServerError>;

    /// The property source's name for `file` (`file:main/shop.yaml`).
    fn source_name(&self, file: &str) -> String;
}

/// Serves a directory: the label is a subdirectory (none: the directory
/// itself); changes are seen by watching the directory tree (notify).
#[derive(Debug, Clone)]
pub struct DirBackend {
    inner: Arc<DirInner>,
}

struct DirInner {
    dir: PathBuf,
    tx: watch::Sender<u64>,
    /// Started with the first [`Backend::changes`] call.
    watcher: OnceLock<Mutex<Option<notify::RecommendedWatcher>>>,
}

impl fmt::Debug for DirInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirBackend")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DirBackend {
    /// Serves the files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirBackend {
            inner: Arc::new(DirInner {
                dir: dir.into(),
                tx: watch::Sender::new(0),
                watcher: OnceLock::new(),
            }),
        }
    }

    /// The served directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn start_watcher(&self) -> Option<notify::RecommendedWatcher> {
        let tx = self.inner.tx.clone();
        let watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev) if crate::watched::files::relevant(&ev.kind) => {
                    tx.send_modify(|v| *v = v.wrapping_add(1));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "config server: directory watch failed"),
            });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(dir = %self.inner.dir.display(), error = %e, "config server: cannot watch the directory; the change stream will stay silent");
                return None;
            }
        };
        if let Err(e) = watcher.watch(&self.inner.dir, RecursiveMode::Recursive) {
            tracing::warn!(dir = %self.inner.dir.display(), error = %e, "config server: cannot watch the directory; the change stream will stay silent");
            return None;
        }
        Some(watcher)
    }
}

impl Backend for DirBackend {
    fn open(&self, label: Option<&str>) -> Result<Box<dyn Snapshot>, ConfigServerError> {
        let (base, rel) = match label {
            Some(l) => {
                let rel: PathBuf = l.split('/').collect();
                let base = self.inner.dir.join(&rel);
                if !base.is_dir() {
                    return Err(ConfigServerError::NoSuchLabel(l.to_owned()));
                }
                (base, rel)
            }
            None => (self.inner.dir.clone(), PathBuf::new()),
        };
        Ok(Box::new(DirSnapshot { base, rel }))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner
            .watcher
            .get_or_init(|| Mutex::new(self.start_watcher()));
        self.inner.tx.subscribe()
    }
}

struct DirSnapshot {
    base: PathBuf,
    rel: PathBuf,
}

impl DirSnapshot {
    fn display(&self, file: &str) -> String {
        self.rel
            .join(file)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl Snapshot for DirSnapshot {
    fn version(&self) -> Option<String> {
        None
    }

    fn read(&self, file: &str) -> Result<Option<String>, ConfigServerError> {
        match std::fs::read_to_string(self.base.join(file)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigServerError::File(format!(
                "{}: {e}",
                self.display(file)
            ))),
        }
    }

    fn source_name(&self, file: &str) -> String {
        format!("file:{}", self.display(file))
    }
}
