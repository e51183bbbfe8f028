//! Hot reload from a file, driven by msp-config's directory watcher.

use super::Gateway;
use super::error::BuildError;
use msp_config::{Loader, Watched};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Keeps a gateway's configuration in line with a file until dropped; from
/// [`Gateway::watch_file`].
pub struct FileWatch {
    path: PathBuf,
    _watched: Watched<serde_json::Value>,
    task: JoinHandle<()>,
}

impl FileWatch {
    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileWatch")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Reloads the gateway whenever `path` changes, until the returned
    /// [`FileWatch`] is dropped.
    ///
    /// The file's directory is watched by msp-config's [`Watched`]
    /// (debounced 50 ms; editors' write-to-temp-then-rename saves and
    /// Kubernetes ConfigMap `..data` symlink swaps are seen). On each
    /// change the file is loaded with
    /// [`GatewayConfig::from_file`](crate::config::GatewayConfig::from_file)
    /// and [reloaded](Gateway::reload): an invalid file is rejected (the
    /// error names route, field and line) and the last good configuration
    /// stays.
    ///
    /// The file name must end in `.yaml`, `.yml` or `.json`.
    pub async fn watch_file(&self, path: impl AsRef<Path>) -> Result<FileWatch, BuildError> {
        let path = path.as_ref().to_path_buf();
        let bad =
            |reason: &str| BuildError::invalid(format!("watching {}", path.display()), reason);
        let app = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| bad("the file name is not UTF-8"))?
            .to_owned();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Only the file matters: no environment layer, no interpolation.
        let loader = Loader::new(app)
            .dir(dir)
            .env_map(Default::default())
            .interpolation(false);
        let watched = Watched::<serde_json::Value>::builder(loader)
            .debounce(Duration::from_millis(50))
            .start()
            .await
            .map_err(|e| bad(&e.to_string()))?;
        let mut events = watched.subscribe();
        let gateway = self.clone();
        let file = path.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    // Accepted or rejected by msp-config (a YAML syntax
                    // error): either way the gateway loads the file itself,
                    // for errors with route, field and line.
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        let _ = gateway.reload_file(&file).await;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(FileWatch {
            path,
            _watched: watched,
            task,
        })
    }
}
