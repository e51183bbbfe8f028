//! The git backend ([`GitBackend`]).

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::backend::{Backend, Snapshot};
use super::error::ConfigServerError;

const FETCH_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

fn backend_err(what: &str) -> impl FnOnce(&dyn fmt::Display) -> ConfigServerError + '_ {
    move |e| ConfigServerError::Backend(format!("{what}: {e}"))
}

/// The state of a git backend's refreshes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GitStatus {
    /// When the last fetch succeeded (`None` for a local repository, or
    /// before the first one).
    pub last_fetch: Option<SystemTime>,
    /// The last fetch's error, cleared by the next success.
    pub last_error: Option<String>,
    /// Fetches failed in a row.
    pub failures: u64,
}

/// Serves a git repository: files read from its object database at the
/// commit a label names (no checkout, so no working-tree race).
///
/// - **Local** ([`GitBackend::open`]): a repository on disk (bare or not);
///   its refs are checked on an interval, so a commit made there reaches
///   the change stream.
/// - **Remote** ([`GitBackend::clone_from`]): a URL or path cloned (bare)
///   into a local directory, then fetched on an interval (branches to
///   `refs/heads/*`, tags to `refs/tags/*`, forced). A fetch that fails
///   leaves the clone as it was, so the last good commits keep being
///   served; the failure is logged and shown by [`GitBackend::status`].
///   A directory that already holds the clone (a restart) is reused.
///
/// A label is a branch, then a tag, then a commit id (4 to 40 hex digits);
/// without one, the repository's `HEAD`. The environment's `version` is the
/// commit id; property sources are named `{uri}/{file}` like Spring's.
///
/// Fetching uses gix's transports: `file://` and local paths run
/// `git-upload-pack` (the `git` program must be installed); ssh runs `ssh`;
/// http(s) is not compiled in (the gix feature that adds it brings an HTTP
/// client stack).
///
/// # Example
///
/// ```no_run
/// use msp_config::server::{ConfigServer, GitBackend};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), msp_config::server::ConfigServerError> {
/// let backend = GitBackend::clone_from("https://git.example.com/config-repo.git", "/var/lib/config/clone")
///     .refresh_interval(Duration::from_secs(30))
///     .build()?;
/// let server = ConfigServer::with_backend(backend).default_label("main");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GitBackend {
    inner: Arc<GitInner>,
}

struct GitInner {
    repo: gix::ThreadSafeRepository,
    uri: String,
    remote: Option<String>,
    subdir: Option<PathBuf>,
    tx: watch::Sender<u64>,
    refs: Mutex<u64>,
    status: Mutex<GitStatus>,
}

impl fmt::Debug for GitInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitBackend")
            .field("uri", &self.uri)
            .field("remote", &self.remote)
            .field("subdir", &self.subdir)
            .finish_non_exhaustive()
    }
}

/// Where a [`GitBackend`] comes from, and how often it refreshes.
#[derive(Debug, Clone)]
#[must_use]
pub struct GitBackendBuilder {
    local: PathBuf,
    remote: Option<String>,
    refresh: Duration,
    subdir: Option<PathBuf>,
}

impl GitBackend {
    /// Serves the repository at `path` (a work tree or a bare repository).
    pub fn open(path: impl Into<PathBuf>) -> GitBackendBuilder {
        GitBackendBuilder {
            local: path.into(),
            remote: None,
            refresh: Duration::from_secs(5),
            subdir: None,
        }
    }

    /// Clones `url` (an ssh or `file://` URL, or a path) bare into `dir`
    /// (reused when it already holds the clone) and serves the clone,
    /// fetching every refresh interval.
    pub fn clone_from(url: impl Into<String>, dir: impl Into<PathBuf>) -> GitBackendBuilder {
        GitBackendBuilder {
            local: dir.into(),
            remote: Some(url.into()),
            refresh: Duration::from_secs(30),
            subdir: None,
        }
    }

    /// The state of the fetches (a remote backend) — for a health check.
    pub fn status(&self) -> GitStatus {
        self.inner
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Fetches (a remote backend) and checks the refs now, as the refresh
    /// thread does every interval; blocking.
    ///
    /// # Errors
    ///
    /// The fetch's error ([`ConfigServerError::Backend`]); the last good
    /// commits stay served.
    pub fn refresh(&self) -> Result<(), ConfigServerError> {
        self.inner.refresh()
    }
}

impl GitBackendBuilder {
    /// How often to check the refs (a local repository, default 5 s) or
    /// fetch (a remote, default 30 s).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh = every.max(Duration::from_millis(1));
        self
    }

    /// Reads the files from this directory of the repository instead of its
    /// root (Spring's `search-paths`, one of them).
    pub fn subdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.subdir = Some(dir.into());
        self
    }

    /// Opens (or clones) the repository and starts the refresh thread,
    /// which ends when the last clone of the backend is dropped. Blocking.
    ///
    /// # Errors
    ///
    /// [`ConfigServerError::Backend`] when the repository cannot be opened
    /// or, with no clone on disk yet, cloned.
    pub fn build(self) -> Result<GitBackend, ConfigServerError> {
        let repo = match &self.remote {
            None => {
                gix::open(&self.local).map_err(|e| backend_err("cannot open the repository")(&e))?
            }
            Some(url) => open_or_clone(url, &self.local)?,
        };
        let uri = self
            .remote
            .clone()
            .unwrap_or_else(|| self.local.display().to_string());
        let inner = Arc::new(GitInner {
            repo: repo.into_sync(),
            uri,
            remote: self.remote,
            subdir: self.subdir,
            tx: watch::Sender::new(0),
            refs: Mutex::new(0),
            status: Mutex::new(GitStatus::default()),
        });
        let fingerprint = inner.refs_fingerprint()?;
        if let Ok(mut r) = inner.refs.lock() {
            *r = fingerprint;
        }
        let weak = Arc::downgrade(&inner);
        let every = self.refresh;
        std::thread::Builder::new()
            .name("msp-config-git".into())
            .spawn(move || refresh_loop(&weak, every))
            .map_err(|e| backend_err("cannot start the refresh thread")(&e))?;
        Ok(GitBackend { inner })
    }
}

fn refresh_loop(weak: &Weak<GitInner>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(inner) = weak.upgrade() else {
            return;
        };
        // A failure is logged and kept in `status`; nothing else to do.
        let _ = inner.refresh();
    }
}

fn open_or_clone(url: &str, dir: &Path) -> Result<gix::Repository, ConfigServerError> {
    if dir.exists()
        && let Ok(repo) = gix::open(dir)
    {
        return Ok(repo);
    }
    let interrupt = AtomicBool::new(false);
    let mut prepare =
        gix::prepare_clone_bare(url, dir).map_err(|e| backend_err("cannot clone")(&e))?;
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, &interrupt)
        .map_err(|e| backend_err("cannot clone")(&e))?;
    Ok(repo)
}

impl GitInner {
    fn refresh(&self) -> Result<(), ConfigServerError> {
        let fetched = match &self.remote {
            Some(_) => self.fetch(),
            None => Ok(()),
        };
        if let Some(_url) = &self.remote
            && let Ok(mut status) = self.status.lock()
        {
            match &fetched {
                Ok(()) => {
                    status.last_fetch = Some(SystemTime::now());
                    status.last_error = None;
                    status.failures = 0;
                }
                Err(e) => {
                    status.last_error = Some(e.to_string());
                    status.failures += 1;
                }
            }
        }
        if let Err(e) = &fetched {
            tracing::warn!(uri = %self.uri, error = %e, "config server: git fetch failed; serving the last fetched commits");
        }
        match self.refs_fingerprint() {
            Ok(now) => {
                let changed = self.refs.lock().map(|mut r| {
                    let changed = *r != now;
                    *r = now;
                    changed
                });
                if changed.unwrap_or(true) {
                    tracing::debug!(uri = %self.uri, "config server: git refs changed");
                    self.tx.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            Err(e) => {
                tracing::warn!(uri = %self.uri, error = %e, "config server: cannot read the git refs");
            }
        }
        fetched
    }

    fn fetch(&self) -> Result<(), ConfigServerError> {
        let repo = self.repo.to_thread_local();
        let err = backend_err("fetch");
        let remote = repo
            .find_remote("origin")
            .map_err(|e| err(&e))?
            .with_refspecs(FETCH_REFSPECS, gix::remote::Direction::Fetch)
            .map_err(|e| backend_err("fetch")(&e))?;
        let interrupt = AtomicBool::new(false);
        remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| backend_err("fetch")(&e))?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| backend_err("fetch")(&e))?
            .receive(gix::progress::Discard, &interrupt)
            .map_err(|e| backend_err("fetch")(&e))?;
        Ok(())
    }

    /// A hash of every ref's name and target (and of `HEAD`).
    fn refs_fingerprint(&self) -> Result<u64, ConfigServerError> {
        let repo = self.repo.to_thread_local();
        let err = || backend_err("cannot list refs");
        let platform = repo.references().map_err(|e| err()(&e))?;
        let mut refs: Vec<(String, String)> = Vec::new();
        for r in platform.all().map_err(|e| err()(&e))? {
            let r = r.map_err(|e| err()(&e))?;
            refs.push((r.name().as_bstr().to_string(), format!("{:?}", r.target())));
        }
        refs.sort();
        let mut h = DefaultHasher::new();
        refs.hash(&mut h);
        let head = repo.head_name().ok().flatten();
        head.map(|n| n.as_bstr().to_string()).hash(&mut h);
        repo.head_id().ok().map(|id| id.to_string()).hash(&mut h);
        Ok(h.finish())
    }

    fn commit<'r>(
        &self,
        repo: &'r gix::Repository,
        label: Option<&str>,
    ) -> Result<gix::Commit<'r>, ConfigServerError> {
        let Some(label) = label else {
            return repo.head_commit().map_err(|e| backend_err("HEAD")(&e));
        };
        for prefix in ["refs/heads/", "refs/tags/"] {
            let name = format!("{prefix}{label}");
            let found = repo
                .try_find_reference(name.as_str())
                .map_err(|e| backend_err(label)(&e))?;
            if let Some(mut r) = found {
                return r.peel_to_commit().map_err(|e| backend_err(label)(&e));
            }
        }
        if (4..=40).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(id) = repo.rev_parse_single(label)
        {
            let object = id.object().map_err(|e| backend_err(label)(&e))?;
            return object.peel_to_commit().map_err(|e| backend_err(label)(&e));
        }
        Err(ConfigServerError::NoSuchLabel(label.to_owned()))
    }
}

impl Backend for GitBackend {
    fn open(&self, label: Option<&str>) -> Result<Box<dyn Snapshot>, ConfigServerError> {
        let repo = self.inner.repo.to_thread_local();
        let commit = self.inner.commit(&repo, label)?;
        let version = commit.id.to_string();
        let tree = commit
            .tree_id()
            .map_err(|e| backend_err("tree")(&e))?
            .detach();
        Ok(Box::new(GitSnapshot {
            inner: self.inner.clone(),
            tree,
            version,
        }))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.tx.subscribe()
    }
}

struct GitSnapshot {
    inner: Arc<GitInner>,
    tree: gix::ObjectId,
    version: String,
}

impl GitSnapshot {
    fn path(&self, file: &str) -> PathBuf {
        match &self.inner.subdir {
            Some(d) => d.join(file),
            None => PathBuf::from(file),
        }
    }
}

impl Snapshot for GitSnapshot {
    fn version(&self) -> Option<String> {
        Some(self.version.clone())
    }

    fn read(&self, file: &str) -> Result<Option<String>, ConfigServerError> {
        let repo = self.inner.repo.to_thread_local();
        let fail = |e: &dyn fmt::Display| ConfigServerError::File(format!("{file}: {e}"));
        let tree = repo.find_tree(self.tree).map_err(|e| fail(&e))?;
        let Some(entry) = tree
            .lookup_entry_by_path(self.path(file))
            .map_err(|e| fail(&e))?
        else {
            return Ok(None);
        };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        let object = entry.object().map_err(|e| fail(&e))?;
        String::from_utf8(object.data.clone())
            .map(Some)
            .map_err(|_| fail(&"not UTF-8"))
    }

    fn source_name(&self, file: &str) -> String {
        let path = self.path(file);
        let rel = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        format!("{}/{rel}", self.inner.uri.trim_end_matches('/'))
    }
}
