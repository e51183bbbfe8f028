//! [`MemoryRegistry`]: the embedded, in-process registry.
//!
//! Everything lives in the process: registrations from one part of a
//! program (or one test) are seen by watchers in another. Leases expire on
//! tokio time, so tests with paused time
//! (`#[tokio::test(start_paused = true)]`) control expiry exactly.
//!
//! For tests of outage behaviour it can simulate faults:
//! [`set_available(false)`](MemoryRegistry::set_available) makes every
//! operation fail as if the registry were unreachable (watches report
//! [`Stale`](crate::registry::WatchEvent::Stale), then send a fresh snapshot when it is
//! back), and [`expire`](MemoryRegistry::expire) drops an instance's lease
//! as a registry restart would.
//!
//! # Example
//!
//! ```
//! use futures_util::StreamExt;
//! use msp_core::Instance;
//! use msp_discovery::registry::{MemoryRegistry, Registry, WatchEvent};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let a = Instance::parse("search", "127.0.0.1:9001")?;
//! let mut watch = registry.watch(a.service());
//! assert!(matches!(watch.next().await, Some(WatchEvent::Snapshot(s)) if s.is_empty()));
//!
//! let registration = registry.register(a.clone(), Duration::from_secs(5)).await?;
//! assert!(matches!(watch.next().await, Some(WatchEvent::Added(i)) if i == a));
//!
//! drop(registration); // deregisters in the background
//! assert!(matches!(watch.next().await, Some(WatchEvent::Removed(id)) if &id == a.id()));
//! # Ok(())
//! # }
//! ```

use crate::registry::{
    BoxFuture, Lease, Registration, RegistrationConfig, Registry, RegistryError, WatchEvent,
    WatchStream,
};
use msp_core::{Instance, InstanceId, ServiceName};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

type Members = Arc<BTreeMap<InstanceId, Instance>>;

const BACKEND: &str = "memory";

/// An in-process registry; clones share the same state.
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
    config: RegistrationConfig,
}

struct Inner {
    state: Mutex<State>,
    available: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    services: HashMap<ServiceName, watch::Sender<Members>>,
    leases: HashMap<u64, LeaseEntry>,
    next_lease: u64,
}

struct LeaseEntry {
    deadline: Instant,
    service: ServiceName,
    id: InstanceId,
}

impl State {
    fn service(&mut self, service: &ServiceName) -> &watch::Sender<Members> {
        self.services
            .entry(service.clone())
            .or_insert_with(|| watch::Sender::new(Members::default()))
    }

    fn put(&mut self, instance: Instance, lease: Option<u64>) {
        // A key belongs to one lease at a time (as in etcd).
        self.leases.retain(|l, e| {
            Some(*l) == lease || !(e.id == *instance.id() && e.service == *instance.service())
        });
        self.service(instance.service())
            .send_if_modified(|members| {
                if members.get(instance.id()) == Some(&instance) {
                    return false;
                }
                Arc::make_mut(members).insert(instance.id().clone(), instance);
                true
            });
    }

    fn remove(&mut self, service: &ServiceName, id: &InstanceId) -> bool {
        self.leases
            .retain(|_, e| !(e.id == *id && e.service == *service));
        match self.services.get(service) {
            Some(tx) => tx.send_if_modified(|members| {
                if !members.contains_key(id) {
                    return false;
                }
                Arc::make_mut(members).remove(id);
                true
            }),
            None => false,
        }
    }
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryRegistry")
            .field("services", &state.services.len())
            .field("leases", &state.leases.len())
            .field("available", &*self.inner.available.borrow())
            .finish()
    }
}

impl MemoryRegistry {
    /// An empty registry with the default [`RegistrationConfig`].
    pub fn new() -> Self {
        MemoryRegistry {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                available: watch::Sender::new(true),
            }),
            config: RegistrationConfig::default(),
        }
    }

    /// Uses `config` for registrations made through this handle.
    #[must_use]
    pub fn with_registration_config(mut self, config: RegistrationConfig) -> Self {
        self.config = config;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.inner)
    }

    fn check_available(&self) -> Result<(), RegistryError> {
        if *self.inner.available.borrow() {
            Ok(())
        } else {
            Err(unavailable())
        }
    }

    /// Simulates an outage (`false`) and the recovery (`true`).
    ///
    /// While unavailable, every operation fails with
    /// [`RegistryError::Unavailable`] and watch streams yield
    /// [`WatchEvent::Stale`]; leases keep expiring on schedule, as on a real
    /// registry the clients cannot reach. When available again, watches send
    /// a fresh [`WatchEvent::Snapshot`].
    pub fn set_available(&self, available: bool) {
        self.inner.available.send_if_modified(|a| {
            let changed = *a != available;
            *a = available;
            changed
        });
    }

    /// Drops the lease of the instance with this id and removes the
    /// instance, as a lease expiry or a registry restart would. Returns
    /// whether it was registered.
    ///
    /// A live [`Registration`] for it notices on its next heartbeat and
    /// registers again.
    pub fn expire(&self, id: &InstanceId) -> bool {
        let mut state = self.lock();
        let services: Vec<ServiceName> = state
            .services
            .iter()
            .filter(|(_, tx)| tx.borrow().contains_key(id))
            .map(|(s, _)| s.clone())
            .collect();
        let mut found = false;
        for service in services {
            found |= state.remove(&service, id);
        }
        found
    }

    /// Stores `instance` without a lease: it stays until deregistered.
    pub fn insert(&self, instance: Instance) -> Result<(), RegistryError> {
        self.check_available()?;
        self.lock().put(instance, None);
        Ok(())
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in
    // a way that matters more than losing the registry: keep going.
    inner
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable() -> RegistryError {
    RegistryError::unavailable(BACKEND, "the in-memory registry is marked unavailable")
}

/// Removes the lease when its deadline passes (renewals move it).
fn spawn_expiry(inner: Weak<Inner>, lease: u64) {
    tokio::spawn(async move {
        loop {
            let deadline = {
                let Some(inner) = inner.upgrade() else { return };
                let state = lock(&inner);
                match state.leases.get(&lease) {
                    Some(e) => e.deadline,
                    None => return,
                }
            };
            tokio::time::sleep_until(deadline).await;
            let Some(inner) = inner.upgrade() else { return };
            let mut state = lock(&inner);
            let Some(entry) = state.leases.get(&lease) else {
                return;
            };
            if entry.deadline <= Instant::now() {
                let (service, id) = (entry.service.clone(), entry.id.clone());
                tracing::debug!(%service, instance = %id, "lease expired");
                state.leases.remove(&lease);
                state.remove(&service, &id);
                return;
            }
        }
    });
}

struct MemoryLease {
    registry: MemoryRegistry,
    instance: Instance,
    ttl: Duration,
    lease: Option<u64>,
}

impl Lease for MemoryLease {
    async fn acquire(&mut self) -> Result<(), RegistryError> {
        self.registry.check_available()?;
        let lease = {
            let mut state = self.registry.lock();
            state.next_lease += 1;
            let lease = state.next_lease;
            state.leases.insert(
                lease,
                LeaseEntry {
                    deadline: Instant::now() + self.ttl,
                    service: self.instance.service().clone(),
                    id: self.instance.id().clone(),
                },
            );
            state.put(self.instance.clone(), Some(lease));
            lease
        };
        self.lease = Some(lease);
        spawn_expiry(Arc::downgrade(&self.registry.inner), lease);
        Ok(())
    }

    async fn renew(&mut self) -> Result<(), RegistryError> {
        self.registry.check_available()?;
        let mut state = self.registry.lock();
        match self.lease.and_then(|l| state.leases.get_mut(&l)) {
            Some(entry) => {
                entry.deadline = Instant::now() + self.ttl;
                Ok(())
            }
            None => Err(RegistryError::LeaseLost),
        }
    }

    async fn release(&mut self) -> Result<(), RegistryError> {
        self.registry.check_available()?;
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        let mut state = self.registry.lock();
        if let Some(entry) = state.leases.remove(&lease) {
            state.remove(&entry.service, &entry.id);
        }
        Ok(())
    }
}

impl Registry for MemoryRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        let lease = MemoryLease {
            registry: self.clone(),
            instance: instance.clone(),
            ttl,
            lease: None,
        };
        Box::pin(Registration::start(
            lease,
            instance,
            ttl,
            self.config.clone(),
        ))
    }

    fn deregister<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            self.check_available()?;
            if self.expire(id) {
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
            self.check_available()?;
            let state = self.lock();
            Ok(state
                .services
                .get(service)
                .map(|tx| tx.borrow().values().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        let members = self.lock().service(service).subscribe();
        let watch = MemoryWatch {
            members,
            available: self.inner.available.subscribe(),
            last: None,
            pending: VecDeque::new(),
            stale: false,
        };
        Box::pin(futures_util::stream::unfold(watch, |mut w| async move {
            let event = w.next_event().await;
            Some((event, w))
        }))
    }
}

struct MemoryWatch {
    members: watch::Receiver<Members>,
    available: watch::Receiver<bool>,
    /// What the consumer has been told; `None` means "send a snapshot".
    last: Option<Members>,
    pending: VecDeque<WatchEvent>,
    stale: bool,
}

impl MemoryWatch {
    async fn next_event(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let available = *self.available.borrow_and_update();
            if !available {
                if !self.stale {
                    self.stale = true;
                    return WatchEvent::Stale(unavailable());
                }
                if self.available.changed().await.is_err() {
                    // The registry is gone; a watch never ends on its own.
                    std::future::pending::<()>().await;
                }
                continue;
            }
            if self.stale {
                self.stale = false;
                self.last = None;
            }
            let current = self.members.borrow_and_update().clone();
            let Some(last) = self.last.replace(current.clone()) else {
                return WatchEvent::Snapshot(current.values().cloned().collect());
            };
            if !Arc::ptr_eq(&last, &current) {
                diff(&last, &current, &mut self.pending);
                continue;
            }
            tokio::select! {
                changed = self.members.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                changed = self.available.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

fn diff(
    old: &BTreeMap<InstanceId, Instance>,
    new: &BTreeMap<InstanceId, Instance>,
    out: &mut VecDeque<WatchEvent>,
) {
    for id in old.keys() {
        if !new.contains_key(id) {
            out.push_back(WatchEvent::Removed(id.clone()));
        }
    }
    for (id, instance) in new {
        if old.get(id) != Some(instance) {
            out.push_back(WatchEvent::Added(instance.clone()));
        }
    }
}
