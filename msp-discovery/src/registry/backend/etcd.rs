//! [`EtcdRegistry`]: instances in etcd v3, kept alive by leases (feature
//! `etcd`).
//!
//! Layout: each instance is a JSON document (msp-core's [`Instance`]
//! format) under `{prefix}/{service}/{instance_id}`, attached to a lease of
//! its own. The default prefix is `/msp/services`.
//!
//! - **Registration** grants a lease with the requested TTL (rounded up to
//!   whole seconds, at least 1 s) and puts the key under it. Heartbeats go
//!   over one keep-alive stream. An answer with TTL 0 or "lease not found"
//!   (the lease expired during a partition, was revoked, or a restore lost
//!   it) makes the [`Registration`] grant a new lease and put the key again,
//!   with backoff; a broken stream is reopened on the next heartbeat.
//!   Deregistration revokes the lease, which deletes the key.
//! - **Watch** lists the prefix once (a [`Snapshot`](WatchEvent::Snapshot)
//!   at the list's header revision) and watches from the next revision.
//!   It tracks the last revision it saw; after a broken connection it
//!   reports [`Stale`](WatchEvent::Stale), reconnects with backoff and
//!   resumes from that revision + 1 (replaying what it missed, then
//!   [`Resumed`](WatchEvent::Resumed)). Before resuming it checks that etcd
//!   still has that history: if the revision was compacted meanwhile (or
//!   lies in the future, after a restore from an older backup) it lists
//!   again and continues from the new [`Snapshot`](WatchEvent::Snapshot)
//!   instead — no `Resumed` with an out-of-date set. A compaction racing
//!   with the reconnection cancels the watch, which also lists again. No
//!   error ends the stream, and a malformed entry is logged and skipped.
//!
//! # Example
//!
//! ```no_run
//! use msp_core::Instance;
//! use msp_discovery::registry::{EtcdRegistry, Registry, ServiceView};
//! use std::time::Duration;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = EtcdRegistry::connect(["http://127.0.0.1:2379"])
//!     .await?
//!     .with_prefix("/prod/services")?;
//!
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

use crate::registry::{
    BoxFuture, Lease, Registration, RegistrationConfig, Registry, RegistryError, WatchEvent,
    WatchStream,
};
use etcd_client::{
    Client, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    WatchOptions, WatchResponse,
};
use msp_core::backoff::{Backoff, BackoffIter};
use msp_core::{Instance, InstanceId, ServiceName};
use rand::rngs::SmallRng;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const BACKEND: &str = "etcd";

/// A registry stored in etcd v3. Cheap to clone (clones share the
/// connection).
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct EtcdRegistry {
    client: Client,
    prefix: Arc<str>,
    registration: RegistrationConfig,
    watch_retry: Backoff,
    timeout: Duration,
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdRegistry {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "/msp/services";

    /// Connects to the etcd cluster at `endpoints` (`http://host:port`).
    ///
    /// The connection is established lazily and re-established on its own
    /// after failures; this fails only for invalid endpoints. HTTP/2
    /// keep-alive pings detect a dead connection within about 10 s.
    pub async fn connect<E: AsRef<str>, S: AsRef<[E]>>(
        endpoints: S,
    ) -> Result<Self, RegistryError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(map_err)?;
        Ok(Self::from_client(client))
    }

    /// Uses an existing client (for TLS, authentication or custom
    /// options).
    pub fn from_client(client: Client) -> Self {
        EtcdRegistry {
            client,
            prefix: Arc::from(Self::DEFAULT_PREFIX),
            registration: RegistrationConfig::default(),
            watch_retry: Backoff::builder()
                .initial(Duration::from_millis(100))
                .max_delay(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Stores instances under `prefix` (no trailing `/`; default
    /// [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX)).
    pub fn with_prefix(mut self, prefix: impl AsRef<str>) -> Result<Self, RegistryError> {
        let prefix = prefix.as_ref().trim_end_matches('/');
        if prefix.is_empty() {
            return Err(RegistryError::Config(
                "the etcd key prefix must not be empty".into(),
            ));
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

    /// The limit on each unary etcd call (default 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The etcd client (a clone sharing the connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The key of `instance`: `{prefix}/{service}/{id}`.
    pub fn key_of(&self, instance: &Instance) -> String {
        format!("{}/{}/{}", self.prefix, instance.service(), instance.id())
    }

    fn service_prefix(&self, service: &ServiceName) -> String {
        format!("{}/{}/", self.prefix, service)
    }
}

fn is_transient_code(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unknown
    )
}

fn map_err(e: etcd_client::Error) -> RegistryError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) if status.code() == tonic::Code::NotFound => RegistryError::LeaseLost,
        E::GRpcStatus(status) if !is_transient_code(status.code()) => RegistryError::Rejected {
            backend: BACKEND,
            source: Box::new(status),
        },
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) => {
            RegistryError::Config(e.to_string())
        }
        E::LeaseKeepAliveError(msg) if msg.contains("not found") => RegistryError::LeaseLost,
        other => RegistryError::unavailable(BACKEND, other),
    }
}

async fn bounded<T>(
    timeout: Duration,
    operation: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(RegistryError::Timeout {
            backend: BACKEND,
            operation,
        }),
    }
}

/// Decodes one stored entry; `None` (with a warning) if it is malformed or
/// its id does not match its key.
fn decode(key: &[u8], value: &[u8]) -> Option<Instance> {
    let key = String::from_utf8_lossy(key);
    match serde_json::from_slice::<Instance>(value) {
        Ok(instance) if key.rsplit('/').next() == Some(instance.id().as_str()) => Some(instance),
        Ok(instance) => {
            tracing::warn!(%key, id = %instance.id(), "etcd entry's id does not match its key; ignored");
            None
        }
        Err(error) => {
            tracing::warn!(%key, %error, "malformed instance in etcd; ignored");
            None
        }
    }
}

fn id_of_key(key: &[u8]) -> Option<InstanceId> {
    let key = std::str::from_utf8(key).ok()?;
    InstanceId::new(key.rsplit('/').next()?).ok()
}

struct EtcdLease {
    client: Client,
    key: String,
    value: Vec<u8>,
    ttl_secs: i64,
    timeout: Duration,
    lease: Option<i64>,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

impl EtcdLease {
    async fn keep_alive_once(&mut self, lease: i64) -> Result<(), RegistryError> {
        let Some((keeper, stream)) = self.keeper.as_mut() else {
            // Opening the stream sends the first keep-alive and checks its
            // answer (TTL 0 becomes "lease not found").
            let pair = bounded(
                self.timeout,
                "keep-alive",
                self.client.lease_keep_alive(lease),
            )
            .await?;
            self.keeper = Some(pair);
            return Ok(());
        };
        keeper.keep_alive().await.map_err(map_err)?;
        match stream.message().await.map_err(map_err)? {
            Some(answer) if answer.ttl() > 0 => Ok(()),
            Some(_) => Err(RegistryError::LeaseLost),
            None => Err(RegistryError::unavailable(
                BACKEND,
                "the lease keep-alive stream was closed",
            )),
        }
    }
}

impl Lease for EtcdLease {
    async fn acquire(&mut self) -> Result<(), RegistryError> {
        self.keeper = None;
        let granted = bounded(
            self.timeout,
            "lease grant",
            self.client.lease_grant(self.ttl_secs, None),
        )
        .await?;
        let lease = granted.id();
        let put = bounded(
            self.timeout,
            "put",
            self.client.put(
                self.key.clone(),
                self.value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
        )
        .await;
        if let Err(error) = put {
            // Do not leave an unused lease behind; it expires anyway.
            let _ = bounded(
                self.timeout,
                "lease revoke",
                self.client.lease_revoke(lease),
            )
            .await;
            return Err(error);
        }
        self.lease = Some(lease);
        Ok(())
    }

    async fn renew(&mut self) -> Result<(), RegistryError> {
        let Some(lease) = self.lease else {
            return Err(RegistryError::LeaseLost);
        };
        let result = match tokio::time::timeout(self.timeout, self.keep_alive_once(lease)).await {
            Ok(result) => result,
            Err(_) => Err(RegistryError::Timeout {
                backend: BACKEND,
                operation: "keep-alive",
            }),
        };
        if result.is_err() {
            // Reopen the stream next time; a half-used stream could pair
            // the next request with a stale answer.
            self.keeper = None;
        }
        if matches!(result, Err(RegistryError::LeaseLost)) {
            self.lease = None;
        }
        result
    }

    async fn release(&mut self) -> Result<(), RegistryError> {
        self.keeper = None;
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        match bounded(
            self.timeout,
            "lease revoke",
            self.client.lease_revoke(lease),
        )
        .await
        {
            Ok(_) | Err(RegistryError::LeaseLost) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Registry for EtcdRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        Box::pin(async move {
            let value = serde_json::to_vec(&instance).map_err(|e| RegistryError::InvalidEntry {
                key: instance.id().to_string(),
                source: e.into(),
            })?;
            let ttl_secs = msp_core::time::ceil_secs(ttl).max(1);
            let lease = EtcdLease {
                client: self.client.clone(),
                key: self.key_of(&instance),
                value,
                ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
                timeout: self.timeout,
                lease: None,
                keeper: None,
            };
            Registration::start(lease, instance, ttl, self.registration.clone()).await
        })
    }

    fn deregister<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            let all = format!("{}/", self.prefix);
            let listed = bounded(
                self.timeout,
                "get",
                client.get(all, Some(GetOptions::new().with_prefix().with_keys_only())),
            )
            .await?;
            let mut found = false;
            for kv in listed.kvs() {
                if id_of_key(kv.key()).as_ref() != Some(id) {
                    continue;
                }
                found = true;
                if kv.lease() != 0 {
                    // Revoking deletes the key; a live Registration sees
                    // its lease gone and registers again (see the trait).
                    match bounded(
                        self.timeout,
                        "lease revoke",
                        client.lease_revoke(kv.lease()),
                    )
                    .await
                    {
                        Ok(_) | Err(RegistryError::LeaseLost) => {}
                        Err(e) => return Err(e),
                    }
                }
                bounded(
                    self.timeout,
                    "delete",
                    client.delete(kv.key().to_vec(), None),
                )
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
            let mut client = self.client.clone();
            let listed = bounded(
                self.timeout,
                "get",
                client.get(
                    self.service_prefix(service),
                    Some(GetOptions::new().with_prefix()),
                ),
            )
            .await?;
            Ok(listed
                .kvs()
                .iter()
                .filter_map(|kv| decode(kv.key(), kv.value()))
                .collect())
        })
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        let watch = EtcdWatch {
            client: self.client.clone(),
            service: service.clone(),
            prefix: self.service_prefix(service),
            timeout: self.timeout,
            revision: None,
            stream: None,
            pending: VecDeque::new(),
            stale: false,
            retry_at: None,
            delays: self.watch_retry.iter(),
            retry: self.watch_retry.clone(),
        };
        Box::pin(futures_util::stream::unfold(watch, |mut w| async move {
            let event = w.next_event().await;
            Some((event, w))
        }))
    }
}

/// One service's watch: list, watch from the list's revision, resume or
/// re-list after failures.
struct EtcdWatch {
    client: Client,
    service: ServiceName,
    prefix: String,
    timeout: Duration,
    /// The last revision whose events were delivered; `None` = list again.
    revision: Option<i64>,
    stream: Option<etcd_client::WatchStream>,
    pending: VecDeque<WatchEvent>,
    stale: bool,
    retry_at: Option<Instant>,
    delays: BackoffIter<SmallRng>,
    retry: Backoff,
}

impl EtcdWatch {
    async fn next_event(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            if let Some(at) = self.retry_at.take() {
                tokio::time::sleep_until(at).await;
            }
            let result = match self.stream.is_some() {
                false => self.connect().await,
                true => self.receive().await,
            };
            if let Err(error) = result {
                self.stream = None;
                let delay = self.delays.next().unwrap_or_else(|| {
                    self.delays.reset();
                    self.retry.max_delay()
                });
                self.retry_at = Some(Instant::now() + delay);
                tracing::debug!(service = %self.service, %error, ?delay, "etcd watch failed; retrying");
                if !self.stale {
                    self.stale = true;
                    return WatchEvent::Stale(error);
                }
            }
        }
    }

    /// Lists if needed, opens the watch and waits until etcd confirms it.
    async fn connect(&mut self) -> Result<(), RegistryError> {
        if let Some(revision) = self.revision
            && !self.history_kept(revision).await?
        {
            self.revision = None;
        }
        let (start, snapshot) = match self.revision {
            Some(revision) => (revision + 1, None),
            None => {
                let listed = bounded(
                    self.timeout,
                    "get",
                    self.client
                        .get(self.prefix.clone(), Some(GetOptions::new().with_prefix())),
                )
                .await?;
                let revision = listed.header().map_or(0, |h| h.revision());
                let instances: Vec<Instance> = listed
                    .kvs()
                    .iter()
                    .filter_map(|kv| decode(kv.key(), kv.value()))
                    .collect();
                (revision + 1, Some((revision, instances)))
            }
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = bounded(
            self.timeout,
            "watch",
            self.client.watch(self.prefix.clone(), Some(options)),
        )
        .await?;
        let first = bounded(self.timeout, "watch", stream.message()).await?;
        match first {
            Some(response) if response.created() && !response.canceled() => {}
            Some(response) => {
                return Err(RegistryError::unavailable(
                    BACKEND,
                    format!("watch not created: {}", response.cancel_reason()),
                ));
            }
            None => {
                return Err(RegistryError::unavailable(
                    BACKEND,
                    "the watch stream closed before it was created",
                ));
            }
        }
        self.stream = Some(stream);
        self.delays.reset();
        match snapshot {
            Some((revision, instances)) => {
                self.revision = Some(revision);
                self.stale = false;
                self.pending.push_back(WatchEvent::Snapshot(instances));
            }
            None if self.stale => {
                self.stale = false;
                tracing::info!(service = %self.service, from_revision = start, "etcd watch resumed");
                self.pending.push_back(WatchEvent::Resumed);
            }
            None => {}
        }
        Ok(())
    }

    /// Whether etcd still has the history after `revision`, so a watch
    /// can resume from `revision + 1`.
    ///
    /// etcd accepts a watch from a compacted revision and cancels it only
    /// later (when its watchers are next synced, up to 100 ms after), so
    /// checking the answer to the watch request is not enough: resuming
    /// would report [`Resumed`](WatchEvent::Resumed) with a set that is not
    /// current. A read at `revision` fails with `OutOfRange` if it was
    /// compacted, or if it is in the future (etcd restored from an older
    /// backup, where revisions start over): both mean "list again". A
    /// compaction between this check and the watch is still caught by the
    /// watch's cancellation (a `Snapshot` then follows the `Resumed`).
    async fn history_kept(&mut self, revision: i64) -> Result<bool, RegistryError> {
        let options = GetOptions::new()
            .with_prefix()
            .with_count_only()
            .with_revision(revision);
        let read = tokio::time::timeout(
            self.timeout,
            self.client.get(self.prefix.clone(), Some(options)),
        )
        .await;
        match read {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(etcd_client::Error::GRpcStatus(status)))
                if status.code() == tonic::Code::OutOfRange =>
            {
                tracing::info!(
                    service = %self.service,
                    last_seen = revision,
                    reason = status.message(),
                    "etcd no longer has the watch's history; listing again"
                );
                Ok(false)
            }
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) => Err(RegistryError::Timeout {
                backend: BACKEND,
                operation: "get",
            }),
        }
    }

    async fn receive(&mut self) -> Result<(), RegistryError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        match stream.message().await.map_err(map_err)? {
            Some(response) => {
                self.apply(response);
                Ok(())
            }
            None => Err(RegistryError::unavailable(
                BACKEND,
                "the watch stream was closed",
            )),
        }
    }

    fn apply(&mut self, response: WatchResponse) {
        if response.canceled() {
            self.stream = None;
            if response.compact_revision() > 0 {
                // Events we have not seen were compacted away: start over
                // from a fresh list (a Snapshot replaces the consumer's set).
                tracing::info!(
                    service = %self.service,
                    last_seen = ?self.revision,
                    compacted_to = response.compact_revision(),
                    "etcd watch revision was compacted; listing again"
                );
                self.revision = None;
            } else {
                tracing::warn!(service = %self.service, reason = response.cancel_reason(), "etcd cancelled the watch; reconnecting");
            }
            return;
        }
        let mut revision = self.revision.unwrap_or(0);
        if response.events().is_empty() {
            // A progress notification: every event up to the header's
            // revision has been delivered.
            if let Some(header) = response.header() {
                revision = revision.max(header.revision());
            }
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            revision = revision.max(kv.mod_revision());
            // A delete event's key-value has version 0 (and no value); a put
            // has version >= 1. Reading the version avoids
            // `Event::event_type`, which panics on unknown event types.
            let change = if kv.version() == 0 {
                id_of_key(kv.key()).map(WatchEvent::Removed)
            } else {
                match decode(kv.key(), kv.value()) {
                    Some(instance) => Some(WatchEvent::Added(instance)),
                    // A malformed entry must not stay in use.
                    None => id_of_key(kv.key()).map(WatchEvent::Removed),
                }
            };
            self.pending.extend(change);
        }
        self.revision = Some(revision);
    }
}
