//! Feeds tonic's [`Channel::balance_channel`] from a registry (feature
//! `tonic`).
//!
//! tonic balances gRPC calls over a set of [`Endpoint`]s it is told about
//! through a channel of [`Change`]s. [`TonicDiscovery`] follows a
//! [`ServiceView`] (the cached, outage-tolerant instance set of one service)
//! and sends `Change::Insert(id, endpoint)` / `Change::Remove(id)` as
//! instances come and go. A registry outage sends nothing: tonic keeps its
//! endpoints. [`balance_channel`] does both steps in one call.
//!
//! # Example
//!
//! ```
//! use msp_core::Instance;
//! use msp_discovery::registry::MemoryRegistry;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! registry.insert(Instance::parse("greeter", "127.0.0.1:50051")?)?;
//!
//! // A Channel balancing over every instance of "greeter"; keep `_feed`
//! // alive as long as the channel is used.
//! let (channel, _feed) = msp_discovery::tonic::balance_channel(&registry, "greeter".parse()?, 16);
//! // let mut client = GreeterClient::new(channel);
//! # drop(channel);
//! # Ok(())
//! # }
//! ```

use crate::discover::ServiceDiscover;
use crate::registry::{Registry, ServiceView};
use futures_util::StreamExt;
use msp_core::{Instance, InstanceId, ServiceName};
use tokio::sync::mpsc::Sender;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;

/// A task sending a service's instances to a tonic balance channel. The
/// task stops when this handle is dropped or the channel is gone.
#[derive(Debug)]
pub struct TonicDiscovery {
    task: JoinHandle<()>,
}

impl TonicDiscovery {
    /// Sends every instance as `http://{addr}` with tonic's default
    /// endpoint settings.
    pub fn spawn(view: ServiceView, sender: Sender<Change<InstanceId, Endpoint>>) -> Self {
        Self::spawn_with(view, sender, default_endpoint)
    }

    /// Sends every instance as the endpoint `make` builds for it (TLS,
    /// timeouts, keep-alive…). An instance for which `make` returns `None`
    /// is skipped with a warning.
    pub fn spawn_with<F>(
        view: ServiceView,
        sender: Sender<Change<InstanceId, Endpoint>>,
        make: F,
    ) -> Self
    where
        F: FnMut(&Instance) -> Option<Endpoint> + Send + Unpin + 'static,
    {
        let mut discover = ServiceDiscover::new(view, make);
        let task = tokio::spawn(async move {
            while let Some(Ok(change)) = discover.next().await {
                let change = match change {
                    tower::discover::Change::Insert(id, Some(endpoint)) => {
                        Change::Insert(id, endpoint)
                    }
                    tower::discover::Change::Insert(id, None) => {
                        tracing::warn!(instance = %id, "no tonic endpoint for this instance; skipped");
                        Change::Remove(id)
                    }
                    tower::discover::Change::Remove(id) => Change::Remove(id),
                };
                if sender.send(change).await.is_err() {
                    return; // the channel was dropped
                }
            }
        });
        TonicDiscovery { task }
    }
}

impl Drop for TonicDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn default_endpoint(instance: &Instance) -> Option<Endpoint> {
    Endpoint::from_shared(format!("http://{}", instance.addr())).ok()
}

/// A tonic [`Channel`] balancing over the instances of `service`, kept up
/// to date from `registry`; `capacity` bounds the change queue. Must be
/// called on a tokio runtime.
pub fn balance_channel<R: Registry + ?Sized>(
    registry: &R,
    service: ServiceName,
    capacity: usize,
) -> (Channel, TonicDiscovery) {
    let (channel, sender) = Channel::balance_channel(capacity.max(1));
    let feed = TonicDiscovery::spawn(ServiceView::new(registry, service), sender);
    (channel, feed)
}
