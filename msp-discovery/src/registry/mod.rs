//! Service registries: where instances announce themselves and where
//! clients find them.
//!
//! The [`Registry`] trait is the one interface every backend implements:
//!
//! | operation | what it does |
//! |---|---|
//! | [`register`](Registry::register) | stores an instance under a lease with a TTL and returns a [`Registration`] that heartbeats, re-registers after a lost lease and deregisters on drop |
//! | [`instances`](Registry::instances) | lists the instances of a service once |
//! | [`watch`](Registry::watch) | a never-ending stream of [`WatchEvent`]s for a service |
//! | [`deregister`](Registry::deregister) | removes an instance by id |
//!
//! The backends live in their own folder, [`backend`]: [`MemoryRegistry`]
//! (the embedded default, in-process), [`StaticRegistry`] (a fixed list
//! from config), `EtcdRegistry` (feature `etcd`), `ZooKeeperRegistry`
//! (feature `zookeeper`) and `DnsDiscovery` (feature `dns`), all re-exported here and at the crate root. This
//! module holds what they share: the trait, the [`Registration`] handle
//! every backend drives through its [`Lease`], the [`Registrar`] and the
//! [`ServiceView`].
//!
//! Third-party registration (registering instances you health-check
//! rather than yourself) is the [`Registrar`].
//!
//! Clients rarely consume a watch stream directly: a [`ServiceView`] keeps
//! the last known instances of a service from it, hands them out as a cheap
//! `Arc<[Instance]>` snapshot, and **keeps them during a registry outage**
//! (reporting staleness in the `msp_discovery_stale{service}` gauge and in
//! logs) instead of emptying the set. The balancers are built on it.
//!
//! # Watch semantics
//!
//! A watch stream starts with a [`WatchEvent::Snapshot`] of the full set,
//! followed by [`Added`](WatchEvent::Added) / [`Removed`](WatchEvent::Removed)
//! changes. When the backend becomes unreachable the stream yields
//! [`WatchEvent::Stale`] — *not* the end of the stream, and not a reason to
//! forget instances — and reconnects with backoff on its own. Once back, it
//! either replays what it missed and yields [`WatchEvent::Resumed`], or
//! starts over with a fresh `Snapshot` that replaces everything before it.
//! A watch stream only ends when it is dropped.
//!
//! # Example
//!
//! ```
//! use msp_core::{Instance, ServiceName};
//! use msp_discovery::registry::{MemoryRegistry, Registry, ServiceView};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let orders = ServiceName::new("order-service")?;
//!
//! // Self-registration: keeps heartbeating until dropped or deregistered.
//! let instance = Instance::parse("order-service", "127.0.0.1:8080")?;
//! let registration = registry.register(instance, Duration::from_secs(10)).await?;
//! assert!(registration.is_registered());
//!
//! // Client side: a cached, always-available view of the service.
//! let view = ServiceView::new(&registry, orders.clone());
//! view.ready().await;
//! assert_eq!(view.snapshot().len(), 1);
//!
//! registration.deregister().await?;
//! let state = view.wait_for(|s| s.instances().is_empty()).await;
//! assert!(!state.is_stale());
//! # Ok(())
//! # }
//! ```

use futures_core::Stream;
use msp_core::{Instance, InstanceId, ServiceName};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub mod backend;
mod error;
pub mod registrar;
pub mod registration;
pub mod view;

#[cfg(feature = "etcd")]
pub use self::backend::EtcdRegistry;
#[cfg(feature = "zookeeper")]
pub use self::backend::ZooKeeperRegistry;
#[cfg(feature = "dns")]
pub use self::backend::{DnsDiscovery, DnsTarget};
pub use self::backend::{MemoryRegistry, StaticConfig, StaticRegistry};
pub use self::error::RegistryError;
pub use self::registrar::{CheckOutcome, Registrar, RegistrarHandle, TargetState};
pub use self::registration::{
    Lease, Registration, RegistrationConfig, RegistrationConfigBuilder, RegistrationConfigError,
    RegistrationStatus,
};
pub use self::view::{ServiceView, ViewState};

/// A boxed, `Send` future, as returned by [`Registry`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The stream returned by [`Registry::watch`]: never ends on its own.
pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send + 'static>>;

/// One change seen by [`Registry::watch`].
#[derive(Debug)]
#[non_exhaustive]
pub enum WatchEvent {
    /// The complete set of instances. Replaces everything seen before:
    /// sent first, and again whenever the watch had to start over (after a
    /// compaction, or a reconnect that could not resume).
    Snapshot(Vec<Instance>),
    /// An instance appeared, or an instance with this id changed (address,
    /// weight, metadata…): insert or replace it.
    Added(Instance),
    /// The instance with this id left (deregistered, or its lease expired).
    Removed(InstanceId),
    /// The backend is unreachable: the instances known so far may be out of
    /// date. **Keep them.** The stream reconnects on its own (with backoff)
    /// and continues with [`Resumed`](WatchEvent::Resumed) or a new
    /// [`Snapshot`](WatchEvent::Snapshot).
    Stale(RegistryError),
    /// The watch reconnected after [`Stale`](WatchEvent::Stale) and resumed
    /// where it left off: the set is current again (changes missed during
    /// the outage are replayed as `Added`/`Removed` around this event).
    Resumed,
}

/// A service registry: register instances, list them, watch them.
///
/// The trait is object safe (`Arc<dyn Registry>` implements it too), so a
/// backend can be chosen at run time. All methods may be called
/// concurrently from clones of one registry.
///
/// See the [module docs](self) for the watch semantics every backend
/// follows.
pub trait Registry: Send + Sync + 'static {
    /// Registers `instance` under a lease that lives `ttl` unless renewed.
    ///
    /// On success the returned [`Registration`] renews the lease with
    /// jittered heartbeats (about every `ttl / 3`), registers again if the
    /// lease is lost, and deregisters when dropped or when
    /// [`Registration::deregister`] is awaited. Fails if the first
    /// registration fails (for example the backend is unreachable).
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>>;

    /// Removes the instance with this id, in whichever service it is.
    ///
    /// This is an administrative removal. A process that still holds a
    /// [`Registration`] for the instance puts it back on its next heartbeat
    /// (as Eureka does); to leave for good, deregister the `Registration`.
    fn deregister<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// The instances of `service` right now (empty if none is registered).
    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Vec<Instance>, RegistryError>>;

    /// Watches `service`: a [`Snapshot`](WatchEvent::Snapshot) first, then
    /// changes. Backend errors are reported as
    /// [`Stale`](WatchEvent::Stale) and retried; the stream never ends on
    /// its own.
    fn watch(&self, service: &ServiceName) -> WatchStream;
}

impl<R: Registry + ?Sized> Registry for Arc<R> {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        (**self).register(instance, ttl)
    }

    fn deregister<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>> {
        (**self).deregister(id)
    }

    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Vec<Instance>, RegistryError>> {
        (**self).instances(service)
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        (**self).watch(service)
    }
}

impl<R: Registry + ?Sized> Registry for Box<R> {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        (**self).register(instance, ttl)
    }

    fn deregister<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>> {
        (**self).deregister(id)
    }

    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Vec<Instance>, RegistryError>> {
        (**self).instances(service)
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        (**self).watch(service)
    }
}
