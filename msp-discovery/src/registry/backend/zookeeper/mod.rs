//! [`ZooKeeperRegistry`]: instances as ephemeral znodes in Apache
//! ZooKeeper (feature `zookeeper`).
//!
//! # Layout
//!
//! ```text
//! {prefix}                       persistent   (default /msp/services)
//! └── {service}                  persistent   created on first registration
//!     └── {instance id}          EPHEMERAL    data: the Instance as JSON
//! ```
//!
//! The data of an instance znode is msp-core's [`Instance`] JSON — the same
//! document the etcd backend stores — so `zkCli.sh get
//! /msp/services/orders/orders-1` shows what a client will use. Instance
//! ids are unique, so znodes are named by id and need no sequence suffix.
//!
//! # Registration: one session per instance
//!
//! A ZooKeeper session is the lease: its ephemeral znodes disappear when
//! the session ends (closed, or expired because the server heard nothing
//! from the client for the session timeout). Each [`Registration`] opens
//! its own session whose timeout is the registration's TTL (the server
//! clamps it to its `minSessionTimeout..=maxSessionTimeout`, by default
//! 2–20 ticks; the negotiated value is logged when it differs), and
//! creates the instance znode in it:
//!
//! - the client library pings the server inside the session; the
//!   registration's heartbeat (every TTL / 3) checks that the znode still
//!   exists **and belongs to this session** (`ephemeralOwner`);
//! - a lost connection makes heartbeats fail transiently
//!   ([`Unconfirmed`](crate::registry::RegistrationStatus::Unconfirmed));
//!   the library reconnects and resumes the session if the server still
//!   has it (a restarted server restores sessions from its snapshot);
//! - an **expired session** (the server or the client gave up on it), or a
//!   znode deleted or taken over by someone else, is a lost lease: the
//!   registration opens a new session and creates the znode again, with
//!   backoff, without any application action. A znode left behind by an
//!   earlier session of the same instance (a crash and a quick restart, or
//!   a session the client gave up on while the server still holds it) is
//!   deleted and created anew, as Curator's service discovery does (so
//!   two *live* processes registering one id would take it from each other
//!   on every heartbeat: ids must be unique, as everywhere in msp);
//! - deregistration deletes the znode. The session is *detached*: a
//!   dropped or [abandoned](crate::registry::Registration::abandon)
//!   registration does not close it, so — as after a crash — its znode
//!   lives until the server expires the session one TTL later.
//!
//! # Watch
//!
//! Reads and watches share one session of the registry (timeout
//! [`SESSION_TIMEOUT`](ZooKeeperRegistry::SESSION_TIMEOUT)), opened again if
//! it expires. A watch adds a *persistent recursive* watch on
//! `{prefix}/{service}` (ZooKeeper ≥ 3.6) before listing, so nothing
//! between the list and the watch is missed, then sends a
//! [`Snapshot`](crate::registry::WatchEvent::Snapshot). Each created or changed znode is
//! read and sent as [`Added`](crate::registry::WatchEvent::Added), each deleted one as
//! [`Removed`](crate::registry::WatchEvent::Removed). When the connection drops or the
//! session expires the stream yields [`Stale`](crate::registry::WatchEvent::Stale), then
//! re-arms the watch with backoff and lists again: the differences with
//! what it had sent are replayed as `Added` / `Removed`, followed by
//! [`Resumed`](crate::registry::WatchEvent::Resumed). (ZooKeeper does not replay events of
//! persistent watches missed while disconnected — ZOOKEEPER-4698 — hence
//! the list after every reconnection.)
//!
//! A znode whose data is not a valid instance (not JSON, or an id or
//! service that does not match its path) is never served: it is skipped in
//! lists, removes a known instance of that id, is logged as a warning and
//! counted in `msp_discovery_invalid_entries_total{backend="zookeeper",
//! service}`. No error ends a watch stream.
//!
//! # Client
//!
//! Built on [`zookeeper-client`](https://docs.rs/zookeeper-client): a
//! maintained, pure-Rust async client that speaks the current protocol
//! (persistent recursive watches, `create2`, session re-establishment,
//! TLS and SASL), reports session states through a watcher instead of
//! callbacks and runs on tokio. The alternatives are older (`zookeeper`:
//! blocking, threads and callbacks; `zookeeper-async`: last release
//! 2024, no persistent watches; `tokio-zookeeper`: a small subset of the
//! protocol). Its types do not appear in this module's API.
//!
//! # Example
//!
//! Against a ZooKeeper on `127.0.0.1:2181` (`apt install zookeeper`; the
//! tests start a private one per test):
//!
//! ```no_run
//! use msp_core::Instance;
//! use msp_discovery::registry::{Registry, ServiceView, ZooKeeperRegistry};
//! use std::time::Duration;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = ZooKeeperRegistry::connect("127.0.0.1:2181")
//!     .await?
//!     .with_prefix("/prod/services")?;
//!
//! // An ephemeral znode in a session of its own, timeout 10 s.
//! let me = Instance::parse("order-service", "10.0.0.7:8080")?;
//! let registration = registry.register(me.clone(), Duration::from_secs(10)).await?;
//!
//! let view = ServiceView::new(&registry, me.service().clone());
//! view.ready().await;
//! println!("order-service instances: {:?}", view.snapshot());
//! registration.deregister().await?;
//! # Ok(())
//! # }
//! ```

mod lease;
mod watch;

use self::lease::ZooKeeperLease;
use self::watch::ZooKeeperWatch;
use crate::registry::{
    BoxFuture, Registration, RegistrationConfig, Registry, RegistryError, WatchStream,
};
use msp_core::backoff::Backoff;
use msp_core::{Instance, InstanceId, ServiceName};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use zookeeper_client as zk;

const BACKEND: &str = "zookeeper";

/// A registry stored in Apache ZooKeeper. Cheap to clone (clones share the
/// registry's session).
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct ZooKeeperRegistry {
    cluster: Arc<str>,
    session: Arc<SharedSession>,
    prefix: Arc<str>,
    registration: RegistrationConfig,
    watch_retry: Backoff,
    timeout: Duration,
}

impl fmt::Debug for ZooKeeperRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZooKeeperRegistry")
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ZooKeeperRegistry {
    /// The default path prefix.
    pub const DEFAULT_PREFIX: &'static str = "/msp/services";

    /// The timeout of the registry's own session (reads and watches). A
    /// silent connection is given up after 2/5 of it; the session is
    /// opened again if it expires.
    pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default limit on each ZooKeeper call and on connecting.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to the ZooKeeper ensemble `cluster`, a connection string
    /// as the Java client takes it: `host1:2181,host2:2181[/chroot]`.
    ///
    /// Opens the registry's session to fail early on a wrong address or an
    /// unreachable ensemble ([`RegistryError::Unavailable`] or
    /// [`Timeout`](RegistryError::Timeout) within 5 s,
    /// [`Config`](RegistryError::Config) for an invalid string). Later
    /// connection losses are recovered from on their own.
    ///
    /// ```
    /// use msp_discovery::registry::ZooKeeperRegistry;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Nothing listens on port 1: a transient error, worth retrying.
    /// let err = ZooKeeperRegistry::connect("127.0.0.1:1").await.unwrap_err();
    /// assert!(err.is_transient(), "{err}");
    /// # }
    /// ```
    pub async fn connect(cluster: impl AsRef<str>) -> Result<Self, RegistryError> {
        let cluster: Arc<str> = Arc::from(cluster.as_ref());
        let registry = ZooKeeperRegistry {
            session: Arc::new(SharedSession {
                cluster: cluster.clone(),
                current: tokio::sync::Mutex::new(None),
            }),
            cluster,
            prefix: Arc::from(Self::DEFAULT_PREFIX),
            registration: RegistrationConfig::default(),
            watch_retry: Backoff::builder()
                .initial(Duration::from_millis(100))
                .max_delay(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            timeout: Self::DEFAULT_TIMEOUT,
        };
        registry.session.client(registry.timeout).await?;
        Ok(registry)
    }

    /// Stores instances under `prefix`, an absolute ZooKeeper path (no
    /// trailing `/`; default [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX)).
    pub fn with_prefix(mut self, prefix: impl AsRef<str>) -> Result<Self, RegistryError> {
        let prefix = prefix.as_ref().trim_end_matches('/');
        let valid = prefix.starts_with('/')
            && prefix[1..]
                .split('/')
                .all(|segment| !matches!(segment, "" | "." | ".."))
            && !prefix.chars().any(char::is_control);
        if !valid {
            return Err(RegistryError::Config(format!(
                "the ZooKeeper path prefix {prefix:?} is not an absolute path like /msp/services"
            )));
        }
        self.prefix = Arc::from(prefix);
        Ok(self)
    }

    /// Uses `config` for registrations made through this handle.
    #[must_use]
    pub fn with_registration_config(mut self, config: RegistrationConfig) -> Self {
        self.registration = config;
        self
    }

    /// The backoff between watch reconnection attempts (limits are
    /// ignored: a watch never gives up). Default: 100 ms doubling to 5 s,
    /// full jitter.
    #[must_use]
    pub fn with_watch_retry(mut self, backoff: Backoff) -> Self {
        self.watch_retry = backoff;
        self
    }

    /// The limit on each ZooKeeper call and on opening a session (default
    /// 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The path prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The znode of `instance`: `{prefix}/{service}/{id}`.
    pub fn path_of(&self, instance: &Instance) -> String {
        format!("{}/{}/{}", self.prefix, instance.service(), instance.id())
    }

    fn service_path(&self, service: &ServiceName) -> String {
        format!("{}/{}", self.prefix, service)
    }
}

/// The registry's own session, shared by reads and watches and opened
/// again after it expires.
struct SharedSession {
    cluster: Arc<str>,
    current: tokio::sync::Mutex<Option<zk::Client>>,
}

impl SharedSession {
    /// The live client, or a new session (opened within `timeout`) if
    /// there is none or it ended.
    async fn client(&self, timeout: Duration) -> Result<zk::Client, RegistryError> {
        let mut current = self.current.lock().await;
        if let Some(client) = current.as_ref()
            && !client.state().is_terminated()
        {
            return Ok(client.clone());
        }
        if let Some(old) = current.take() {
            tracing::info!(session = %old.session_id(), state = %old.state(), "ZooKeeper session ended; opening a new one");
        }
        let client = open_session(
            &self.cluster,
            ZooKeeperRegistry::SESSION_TIMEOUT,
            false,
            timeout,
        )
        .await?;
        *current = Some(client.clone());
        Ok(client)
    }
}

/// Opens a session. A `detached` session is not closed when its last
/// client is dropped: the server expires it after its timeout.
async fn open_session(
    cluster: &str,
    session_timeout: Duration,
    detached: bool,
    timeout: Duration,
) -> Result<zk::Client, RegistryError> {
    let mut connector = zk::Client::connector()
        .with_session_timeout(session_timeout)
        .with_fail_eagerly();
    if detached {
        connector = connector.with_detached();
    }
    bounded(timeout, "connect", connector.connect(cluster)).await
}

/// Whether a ZooKeeper error means the session is gone for good.
fn is_session_end(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::SessionMoved
    )
}

fn map_err(e: zk::Error) -> RegistryError {
    use zk::Error as E;
    match e {
        E::ConnectionLoss
        | E::Timeout
        | E::NoHosts
        | E::Throttled
        | E::SessionExpired
        | E::SessionMoved
        | E::ClientClosed
        | E::NotReadOnly => RegistryError::unavailable(BACKEND, e),
        E::BadArguments(_) => RegistryError::Config(format!("ZooKeeper: {e}")),
        other => RegistryError::Rejected {
            backend: BACKEND,
            source: Box::new(other),
        },
    }
}

async fn bounded<T>(
    timeout: Duration,
    operation: &'static str,
    call: impl Future<Output = Result<T, zk::Error>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(RegistryError::Timeout {
            backend: BACKEND,
            operation,
        }),
    }
}

/// Decodes the data of the znode `{service path}/{name}`; `None` (logged
/// and counted) if it is not an instance of `service` with id `name`.
fn decode(service: &ServiceName, name: &str, data: &[u8]) -> Option<Instance> {
    let problem = match serde_json::from_slice::<Instance>(data) {
        Ok(instance) if instance.id().as_str() == name && instance.service() == service => {
            return Some(instance);
        }
        Ok(instance) => format!(
            "holds instance {}/{}, which does not match its path",
            instance.service(),
            instance.id()
        ),
        Err(error) => format!("is not an instance: {error}"),
    };
    tracing::warn!(%service, znode = name, problem, "invalid instance znode in ZooKeeper; ignored");
    metrics::counter!(
        "msp_discovery_invalid_entries_total",
        "backend" => BACKEND,
        "service" => service.to_string()
    )
    .increment(1);
    None
}

/// Lists and reads the instances under `path` (the requests are sent
/// together). A znode deleted in between is skipped; so is an invalid one.
async fn list(
    client: &zk::Client,
    service: &ServiceName,
    path: &str,
) -> Result<Vec<Instance>, zk::Error> {
    let children = match client.list_children(path).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let reads: Vec<_> = children
        .iter()
        .map(|name| client.get_data(&format!("{path}/{name}")))
        .collect();
    let mut instances = Vec::with_capacity(children.len());
    for (name, read) in children.iter().zip(reads) {
        match read.await {
            Ok((data, _)) => instances.extend(decode(service, name, &data)),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(instances)
}

impl Registry for ZooKeeperRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        Box::pin(async move {
            let data = serde_json::to_vec(&instance).map_err(|e| RegistryError::InvalidEntry {
                key: instance.id().to_string(),
                source: e.into(),
            })?;
            let lease = ZooKeeperLease::new(
                self.cluster.clone(),
                self.service_path(instance.service()),
                self.path_of(&instance),
                data,
                ttl,
                self.timeout,
            );
            Registration::start(lease, instance, ttl, self.registration.clone()).await
        })
    }

    fn deregister<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let client = self.session.client(self.timeout).await?;
            let services = bounded(self.timeout, "list", async {
                match client.list_children(&self.prefix).await {
                    Err(zk::Error::NoNode) => Ok(Vec::new()),
                    listed => listed,
                }
            })
            .await?;
            let mut found = false;
            for service in services {
                let path = format!("{}/{service}/{id}", self.prefix);
                // Deleting the znode removes the instance; a live
                // Registration sees it gone and creates it again (see the
                // trait).
                found |= bounded(self.timeout, "delete", async {
                    match client.delete(&path, None).await {
                        Ok(()) => Ok(true),
                        Err(zk::Error::NoNode) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            }
            if found {
                Ok(())
            } else {
                Err(RegistryError::NotFound(id.clone()))
            }
        })
    }

    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Vec<Instance>, RegistryError>> {
        Box::pin(async move {
            let client = self.session.client(self.timeout).await?;
            let path = self.service_path(service);
            bounded(self.timeout, "list", list(&client, service, &path)).await
        })
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        let watch = ZooKeeperWatch::new(
            self.session.clone(),
            service.clone(),
            self.service_path(service),
            self.timeout,
            self.watch_retry.clone(),
        );
        Box::pin(futures_util::stream::unfold(watch, |mut w| async move {
            let event = w.next_event().await;
            Some((event, w))
        }))
    }
}
