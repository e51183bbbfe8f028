//! [`ServiceView`]: the last known instances of one service, always
//! available.
//!
//! A view consumes a registry's [watch stream](super::Registry::watch) in a
//! background task and publishes the instance set as an immutable
//! `Arc<[Instance]>` that readers load without locking
//! ([`snapshot`](ServiceView::snapshot): one atomic load and a reference
//! count increment, suitable for every request of a balancer).
//!
//! # Outage behaviour
//!
//! A view never empties itself because the registry is unreachable. On a
//! [`WatchEvent::Stale`] it **keeps the last known instances**, marks itself
//! stale ([`is_stale`](ServiceView::is_stale),
//! [`stale_since`](ServiceView::stale_since)), sets the gauge
//! `msp_discovery_stale{service}` to 1 and logs a warning once. When the
//! watch is back ([`Resumed`](WatchEvent::Resumed), a new
//! [`Snapshot`](WatchEvent::Snapshot), or any change) it reconciles: the
//! snapshot replaces the set, the gauge goes back to 0 and an info log
//! says how long it was stale. Only an answer from the registry (a
//! snapshot or removals) can shrink the set. The gauge
//! `msp_discovery_instances{service}` carries the set's size.
//!
//! # For balancer authors
//!
//! - [`snapshot`](ServiceView::snapshot) is sorted by instance id and
//!   changes only by replacement: hold it as long as a pick needs.
//! - [`subscribe`](ServiceView::subscribe) yields a [`ViewState`] on every
//!   change (instance set or staleness) to rebuild derived structures (hash
//!   rings, weight tables) once per change rather than per request.
//! - Before the first snapshot the set is empty and
//!   [`is_ready`](ServiceView::is_ready) is false; [`ready`](ServiceView::ready)
//!   waits for it.
//! - The background task stops when the last clone of the view is dropped.
//!
//! # Example
//!
//! ```
//! use msp_core::Instance;
//! use msp_discovery::registry::{MemoryRegistry, Registry, ServiceView};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let a = Instance::parse("cart", "127.0.0.1:8001")?;
//! registry.insert(a.clone())?;
//!
//! let view = ServiceView::new(&registry, a.service().clone());
//! view.ready().await;
//! assert_eq!(&view.snapshot()[..], &[a.clone()]);
//!
//! // The registry goes away: the view keeps what it knew, and says so.
//! registry.set_available(false);
//! view.wait_for(|state| state.is_stale()).await;
//! assert_eq!(view.snapshot().len(), 1);
//!
//! // Back: reconciled from a fresh snapshot.
//! registry.set_available(true);
//! view.wait_for(|state| !state.is_stale()).await;
//! # Ok(())
//! # }
//! ```

use super::{Registry, WatchEvent, WatchStream};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use msp_core::{Instance, InstanceId, ServiceName};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a [`ServiceView`] knows at one moment.
#[derive(Debug, Clone)]
pub struct ViewState {
    instances: Arc<[Instance]>,
    ready: bool,
    stale_since: Option<Instant>,
    generation: u64,
}

impl ViewState {
    /// The instances, sorted by id.
    pub fn instances(&self) -> &Arc<[Instance]> {
        &self.instances
    }

    /// Whether a first snapshot arrived.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether the registry is unreachable and the instances may be out of
    /// date.
    pub fn is_stale(&self) -> bool {
        self.stale_since.is_some()
    }

    /// Since when the view is stale.
    pub fn stale_since(&self) -> Option<Instant> {
        self.stale_since
    }

    /// Incremented on every change of the state.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// A cached, outage-tolerant view of one service's instances.
///
/// Cheap to clone (clones share the background task). See the
/// [module docs](self).
#[derive(Clone)]
pub struct ServiceView {
    service: ServiceName,
    current: Arc<ArcSwap<ViewState>>,
    state: watch::Receiver<ViewState>,
    _task: Arc<AbortOnDrop>,
}

impl fmt::Debug for ServiceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.current.load();
        f.debug_struct("ServiceView")
            .field("service", &self.service)
            .field("instances", &state.instances.len())
            .field("ready", &state.ready)
            .field("stale", &state.is_stale())
            .finish()
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ServiceView {
    /// Watches `service` in `registry`. Must be called on a tokio runtime.
    pub fn new<R: Registry + ?Sized>(registry: &R, service: ServiceName) -> ServiceView {
        let stream = registry.watch(&service);
        ServiceView::from_stream(service, stream)
    }

    /// Builds a view from any watch stream (for custom sources and tests).
    /// Must be called on a tokio runtime.
    pub fn from_stream(service: ServiceName, stream: WatchStream) -> ServiceView {
        let initial = ViewState {
            instances: Arc::from(Vec::new()),
            ready: false,
            stale_since: None,
            generation: 0,
        };
        let current = Arc::new(ArcSwap::from_pointee(initial.clone()));
        let (tx, state) = watch::channel(initial);
        let task = Follower {
            service: service.clone(),
            members: BTreeMap::new(),
            current: current.clone(),
            tx,
        };
        let handle = tokio::spawn(task.run(stream));
        ServiceView {
            service,
            current,
            state,
            _task: Arc::new(AbortOnDrop(handle)),
        }
    }

    /// The service this view follows.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The last known instances, sorted by id. Lock-free.
    pub fn snapshot(&self) -> Arc<[Instance]> {
        self.current.load().instances.clone()
    }

    /// The full current state (instances, readiness, staleness).
    pub fn state(&self) -> ViewState {
        ViewState::clone(&self.current.load())
    }

    /// Whether the first snapshot arrived.
    pub fn is_ready(&self) -> bool {
        self.current.load().ready
    }

    /// Whether the registry is unreachable and the instances may be out of
    /// date (they are still served).
    pub fn is_stale(&self) -> bool {
        self.current.load().is_stale()
    }

    /// Since when the view is stale, if it is.
    pub fn stale_since(&self) -> Option<Instant> {
        self.current.load().stale_since
    }

    /// Waits for the first snapshot (returns at once if it arrived).
    ///
    /// Wrap it in `tokio::time::timeout` to bound the wait at start-up when
    /// the registry may be down.
    pub async fn ready(&self) {
        self.wait_for(ViewState::is_ready).await;
    }

    /// Waits until the state satisfies `predicate` (checked at once, then
    /// on every change) and returns that state.
    ///
    /// The future is `Send` when `predicate` is (it holds no lock across an
    /// await), so it can be spawned or awaited inside a tower service.
    pub async fn wait_for(&self, mut predicate: impl FnMut(&ViewState) -> bool) -> ViewState {
        let mut rx = self.state.clone();
        // Clone out of the `watch::Ref` (a read guard, not `Send`) in the
        // same statement, so the guard is gone before any other await.
        let found = rx
            .wait_for(|s| predicate(s))
            .await
            .map(|state| state.clone());
        match found {
            Ok(state) => state,
            // The task ended (it never does while a view exists): nothing
            // will change any more.
            Err(_) => std::future::pending().await,
        }
    }

    /// Waits for the next change this handle has not seen yet (instance
    /// set or staleness) and returns the new state.
    pub async fn changed(&mut self) -> ViewState {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.state.borrow_and_update().clone()
    }

    /// A channel carrying every new [`ViewState`].
    pub fn subscribe(&self) -> watch::Receiver<ViewState> {
        self.state.clone()
    }
}

struct Follower {
    service: ServiceName,
    members: BTreeMap<InstanceId, Instance>,
    current: Arc<ArcSwap<ViewState>>,
    tx: watch::Sender<ViewState>,
}

impl Follower {
    async fn run(mut self, mut stream: WatchStream) {
        let service = self.service.to_string();
        metrics::gauge!("msp_discovery_stale", "service" => service.clone()).set(0.0);
        while let Some(event) = stream.next().await {
            self.apply(event);
        }
        // Watch streams never end; a custom one did. Keep serving what we
        // know, marked stale.
        tracing::warn!(service = %self.service, "watch stream ended; serving the last known instances");
        self.mark_stale();
    }

    fn apply(&mut self, event: WatchEvent) {
        let prev = self.current.load_full();
        let ready = prev.ready || matches!(event, WatchEvent::Snapshot(_));
        let changed_members;
        match event {
            WatchEvent::Snapshot(list) => {
                let members: BTreeMap<_, _> =
                    list.into_iter().map(|i| (i.id().clone(), i)).collect();
                changed_members = members != self.members;
                self.members = members;
            }
            WatchEvent::Added(instance) => {
                changed_members = self.members.get(instance.id()) != Some(&instance);
                self.members.insert(instance.id().clone(), instance);
            }
            WatchEvent::Removed(id) => {
                changed_members = self.members.remove(&id).is_some();
            }
            WatchEvent::Stale(error) => {
                if !prev.is_stale() {
                    tracing::warn!(service = %self.service, %error, instances = self.members.len(), "registry unreachable; keeping the last known instances");
                }
                self.mark_stale();
                return;
            }
            WatchEvent::Resumed => changed_members = false,
        }
        if let Some(since) = prev.stale_since {
            tracing::info!(service = %self.service, stale_for = ?since.elapsed(), instances = self.members.len(), "registry reachable again; instances reconciled");
            metrics::gauge!("msp_discovery_stale", "service" => self.service.to_string()).set(0.0);
        }
        let instances = if changed_members {
            let list: Arc<[Instance]> = self.members.values().cloned().collect();
            metrics::gauge!("msp_discovery_instances", "service" => self.service.to_string())
                .set(list.len() as f64);
            list
        } else {
            prev.instances.clone()
        };
        if !changed_members && prev.stale_since.is_none() && prev.ready == ready {
            return;
        }
        self.publish(ViewState {
            instances,
            ready,
            stale_since: None,
            generation: prev.generation + 1,
        });
    }

    fn mark_stale(&mut self) {
        let prev = self.current.load_full();
        if prev.is_stale() {
            return;
        }
        metrics::gauge!("msp_discovery_stale", "service" => self.service.to_string()).set(1.0);
        self.publish(ViewState {
            instances: prev.instances.clone(),
            ready: prev.ready,
            stale_since: Some(Instant::now()),
            generation: prev.generation + 1,
        });
    }

    fn publish(&self, state: ViewState) {
        self.current.store(Arc::new(state.clone()));
        self.tx.send_replace(state);
    }
}
