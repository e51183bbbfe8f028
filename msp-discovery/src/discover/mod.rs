//! tower's [`Discover`](tower::discover::Discover) over a registry watch,
//! so `tower::balance` can balance tower services across instances.
//!
//! [`ServiceDiscover`] follows a [`ServiceView`] — the cached,
//! outage-tolerant instance set of one service — and turns every change into
//! [`Change::Insert`] / [`Change::Remove`], building one tower service per
//! instance with a function you give it (a `MakeService` in spirit: an
//! HTTP client bound to the address, a tonic channel, a test double).
//!
//! **It never yields an error.** tower's `Balance` fails `poll_ready` as
//! soon as its `Discover` returns `Err`, which would turn a registry blip
//! into failed requests. Here the error type is [`Infallible`]: while the
//! registry is unreachable the view keeps the last known instances (and logs
//! and exports the staleness), so the balancer keeps its services; when the
//! registry is back, the differences arrive as ordinary changes. An instance
//! whose address or metadata changed is re-inserted under the same key
//! (tower replaces the service).
//!
//! For power-of-two-choices over peak-EWMA latency, wrap the discover in
//! tower's [`PeakEwmaDiscover`](tower::load::PeakEwmaDiscover) — it fits
//! exactly here, since `Balance` balances services.
//!
//! # Example
//!
//! ```
//! use msp_core::Instance;
//! use msp_discovery::discover::ServiceDiscover;
//! use msp_discovery::registry::MemoryRegistry;
//! use std::{convert::Infallible, net::SocketAddr, time::Duration};
//! use tower::balance::p2c::Balance;
//! use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let registry = MemoryRegistry::new();
//! registry.insert(Instance::parse("echo", "127.0.0.1:7001")?)?;
//! registry.insert(Instance::parse("echo", "127.0.0.1:7002")?)?;
//!
//! // One tower service per instance; here it just answers its address.
//! let discover = ServiceDiscover::from_registry(&registry, "echo".parse()?, |i: &Instance| {
//!     let addr = i.addr();
//!     service_fn(move |_req: ()| async move { Ok::<SocketAddr, Infallible>(addr) })
//! });
//! let discover = PeakEwmaDiscover::new(
//!     discover,
//!     Duration::from_millis(10),
//!     Duration::from_secs(10),
//!     CompleteOnResponse::default(),
//! );
//! let mut balance = Balance::new(discover);
//!
//! let addr = balance.ready().await?.call(()).await?;
//! assert!([7001, 7002].contains(&addr.port()));
//! # Ok(())
//! # }
//! ```

use crate::registry::{Registry, ServiceView, ViewState};
use futures_core::Stream;
use msp_core::{Instance, InstanceId, ServiceName};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_stream::wrappers::WatchStream;
use tower::discover::Change;

/// A tower [`Discover`](tower::discover::Discover) of one service's
/// instances (see the [module docs](self)).
///
/// Keys are [`InstanceId`]s; `make` builds the service for an instance.
pub struct ServiceDiscover<F, S> {
    view: ServiceView,
    states: WatchStream<ViewState>,
    known: BTreeMap<InstanceId, Instance>,
    pending: VecDeque<Change<InstanceId, S>>,
    make: F,
}

impl<F, S> ServiceDiscover<F, S>
where
    F: FnMut(&Instance) -> S,
{
    /// Follows an existing view.
    pub fn new(view: ServiceView, make: F) -> Self {
        let states = WatchStream::new(view.subscribe());
        ServiceDiscover {
            view,
            states,
            known: BTreeMap::new(),
            pending: VecDeque::new(),
            make,
        }
    }

    /// Watches `service` in `registry` through a new [`ServiceView`]. Must
    /// be called on a tokio runtime.
    pub fn from_registry<R: Registry + ?Sized>(
        registry: &R,
        service: ServiceName,
        make: F,
    ) -> Self {
        Self::new(ServiceView::new(registry, service), make)
    }

    /// The view this follows (readiness, staleness).
    pub fn view(&self) -> &ServiceView {
        &self.view
    }

    /// Queues the changes from the known set to `instances`.
    fn diff(&mut self, instances: &[Instance]) {
        let mut next: BTreeMap<InstanceId, Instance> = BTreeMap::new();
        for instance in instances {
            let unchanged = self.known.get(instance.id()) == Some(instance);
            if !unchanged {
                let service = (self.make)(instance);
                self.pending
                    .push_back(Change::Insert(instance.id().clone(), service));
            }
            next.insert(instance.id().clone(), instance.clone());
        }
        for id in self.known.keys() {
            if !next.contains_key(id) {
                self.pending.push_back(Change::Remove(id.clone()));
            }
        }
        self.known = next;
    }
}

impl<F, S> Stream for ServiceDiscover<F, S>
where
    F: FnMut(&Instance) -> S + Unpin,
    S: Unpin,
{
    type Item = Result<Change<InstanceId, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match Pin::new(&mut this.states).poll_next(cx) {
                Poll::Ready(Some(state)) => {
                    // Before the first snapshot the (empty) set means
                    // "unknown yet", not "no instances".
                    if state.is_ready() {
                        this.diff(state.instances());
                    }
                }
                // The view's sender lives as long as `this.view`: the stream
                // cannot end while we hold it. Should it, stay pending rather
                // than end the discover (which `Balance` treats as fatal).
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<F, S> fmt::Debug for ServiceDiscover<F, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceDiscover")
            .field("view", &self.view)
            .field("known", &self.known.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}
