//! etcd v3 source: every key under a prefix is a config path.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, WatchOptions, WatchStream};
use futures_util::future::BoxFuture;
use msp_core::BoxError;
use tokio::sync::Mutex;

use super::{RemoteData, RemoteSource};

/// Reads the keys under a prefix and watches it.
///
/// `{prefix}db/pool/max_size` becomes `db.pool.max_size` (`/` separates
/// levels); values are UTF-8 text and convert to numbers and booleans on
/// extraction. The connection is made lazily and re-made after failures, so
/// an etcd outage only delays updates: the last entries keep being served.
///
/// # Example
///
/// ```no_run
/// use msp_config::remote::{EtcdSource, Remote, Startup};
/// use msp_config::{Loader, Watched};
///
/// # #[derive(serde::Deserialize)] struct Cfg {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), msp_config::ConfigError> {
/// let etcd = EtcdSource::new(["http://127.0.0.1:2379"], "/config/shop/");
/// let loader = Loader::new("shop")
///     .remote(Remote::new(etcd).startup(Startup::UseCache).cache_file("shop-etcd.json"));
/// let cfg = Watched::<Cfg>::builder(loader).start().await?;
/// # Ok(()) }
/// ```
pub struct EtcdSource {
    endpoints: Vec<String>,
    prefix: String,
    options: ConnectOptions,
    client: Mutex<Option<Client>>,
    watch: Mutex<Option<WatchStream>>,
}

impl std::fmt::Debug for EtcdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSource")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdSource {
    /// A source for the keys under `prefix` (a trailing `/` is added when
    /// missing) on the etcd cluster at `endpoints`. Connect and request
    /// timeouts default to 3 s.
    pub fn new<E: Into<String>>(
        endpoints: impl IntoIterator<Item = E>,
        prefix: impl Into<String>,
    ) -> Self {
        let mut prefix = prefix.into();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        EtcdSource {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix,
            options: ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(3))
                .with_timeout(Duration::from_secs(3)),
            client: Mutex::new(None),
            watch: Mutex::new(None),
        }
    }

    /// Replaces the connection options (TLS, user, timeouts).
    #[must_use]
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.options = options;
        self
    }

    /// The prefix, with its trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn client(&self) -> Result<Client, BoxError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect(&self.endpoints, Some(self.options.clone())).await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn forget_client(&self) {
        *self.client.lock().await = None;
    }

    async fn get(&self) -> Result<RemoteData, BoxError> {
        let mut client = self.client().await?;
        let resp = match client
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.forget_client().await;
                return Err(e.into());
            }
        };
        let mut data = RemoteData::default();
        for kv in resp.kvs() {
            let key = kv.key_str()?;
            let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            let path = rest
                .split('/')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            if path.is_empty() {
                continue;
            }
            let value = kv.value_str()?.to_owned();
            data.push(path, serde_json::Value::String(value), key.to_owned());
        }
        Ok(data)
    }

    async fn next_change(&self) -> Result<(), BoxError> {
        let mut guard = self.watch.lock().await;
        let Some(stream) = guard.as_mut() else {
            let mut client = self.client().await?;
            match client
                .watch(
                    self.prefix.as_str(),
                    Some(WatchOptions::new().with_prefix()),
                )
                .await
            {
                Ok(s) => {
                    *guard = Some(s);
                    // A new watch may have missed changes: have the caller fetch.
                    return Ok(());
                }
                Err(e) => {
                    drop(guard);
                    self.forget_client().await;
                    return Err(e.into());
                }
            }
        };
        match stream.message().await {
            Ok(Some(resp)) if !resp.canceled() => Ok(()),
            Ok(Some(resp)) => {
                *guard = None;
                Err(format!("etcd watch canceled: {}", resp.cancel_reason()).into())
            }
            Ok(None) => {
                *guard = None;
                Err("etcd watch stream ended".into())
            }
            Err(e) => {
                *guard = None;
                drop(guard);
                self.forget_client().await;
                Err(e.into())
            }
        }
    }
}

impl RemoteSource for EtcdSource {
    fn name(&self) -> String {
        format!("etcd {}{}", self.endpoints.join(","), self.prefix)
    }

    fn fetch(&self) -> BoxFuture<'_, Result<RemoteData, BoxError>> {
        Box::pin(self.get())
    }

    fn changed(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.next_change())
    }
}
