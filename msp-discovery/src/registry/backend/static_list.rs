//! [`StaticRegistry`]: a fixed list of instances, typically from config.
//!
//! For services whose addresses are known in advance (a database proxy, a
//! partner API, a local development setup). The list never changes: a
//! watch yields one [`Snapshot`](crate::registry::WatchEvent::Snapshot) and then
//! nothing, [`register`](crate::registry::Registry::register) and
//! [`deregister`](crate::registry::Registry::deregister) fail with
//! [`RegistryError::Unsupported`] (there is nothing to heartbeat against;
//! silently accepting a registration no one can see would hide a
//! misconfiguration).
//!
//! The config shape (JSON or YAML; unknown fields are rejected) maps
//! service names to endpoints; `id` defaults to `{service}-{addr}`,
//! `weight` to 1:
//!
//! ```yaml
//! services:
//!   order-service:
//!     - addr: 10.0.0.1:8080
//!       zone: eu-west-1a
//!     - addr: 10.0.0.2:8080
//!       id: order-2
//!       weight: 2
//!       metadata: { version: "1.4.2" }
//! ```
//!
//! # Example
//!
//! ```
//! use msp_core::ServiceName;
//! use msp_discovery::registry::{Registry, StaticRegistry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = StaticRegistry::from_json(r#"{
//!     "services": {
//!         "order-service": [
//!             {"addr": "10.0.0.1:8080", "zone": "a"},
//!             {"addr": "10.0.0.2:8080", "id": "order-2", "weight": 2}
//!         ]
//!     }
//! }"#)?;
//! let orders = ServiceName::new("order-service")?;
//! let found = registry.instances(&orders).await?;
//! assert_eq!(found.len(), 2);
//! assert_eq!(found[1].weight(), 2);
//!
//! // Registration is refused with a typed error.
//! let me = msp_core::Instance::parse("order-service", "10.0.0.3:8080")?;
//! assert!(registry.register(me, std::time::Duration::from_secs(10)).await.is_err());
//! # Ok(())
//! # }
//! ```

use crate::registry::{BoxFuture, Registration, Registry, RegistryError, WatchEvent, WatchStream};
use futures_util::StreamExt;
use msp_core::{Instance, InstanceId, ServiceName};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const BACKEND: &str = "static";

/// The serde form of a [`StaticRegistry`]: service name → endpoints.
///
/// See the [module docs](self) for the shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    services: BTreeMap<ServiceName, Vec<StaticEndpoint>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticEndpoint {
    addr: SocketAddr,
    #[serde(default)]
    id: Option<InstanceId>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// A registry over a fixed list of instances.
///
/// Cheap to clone. See the [module docs](self).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "StaticConfig")]
pub struct StaticRegistry {
    services: Arc<BTreeMap<ServiceName, Vec<Instance>>>,
}

impl StaticRegistry {
    /// A registry serving exactly these instances, grouped by their
    /// service.
    pub fn new(instances: impl IntoIterator<Item = Instance>) -> Self {
        let mut services: BTreeMap<ServiceName, Vec<Instance>> = BTreeMap::new();
        for instance in instances {
            services
                .entry(instance.service().clone())
                .or_default()
                .push(instance);
        }
        StaticRegistry {
            services: Arc::new(services),
        }
    }

    /// Builds the registry from its config, validating every endpoint.
    pub fn from_config(config: StaticConfig) -> Result<Self, RegistryError> {
        let mut instances = Vec::new();
        for (service, endpoints) in config.services {
            for e in endpoints {
                let mut builder = Instance::builder(service.clone(), e.addr).weight(e.weight);
                if let Some(id) = e.id {
                    builder = builder.id(id);
                }
                if let Some(zone) = e.zone {
                    builder = builder.zone(zone);
                }
                for (k, v) in e.metadata {
                    builder = builder.metadata(k, v);
                }
                let instance = builder.build().map_err(|e| RegistryError::InvalidEntry {
                    key: format!("services.{service}"),
                    source: e.into(),
                })?;
                instances.push(instance);
            }
        }
        Ok(StaticRegistry::new(instances))
    }

    /// Parses the config from JSON.
    pub fn from_json(json: &str) -> Result<Self, RegistryError> {
        serde_json::from_str(json).map_err(|e| RegistryError::Config(e.to_string()))
    }

    /// The services this registry knows.
    pub fn services(&self) -> impl Iterator<Item = &ServiceName> {
        self.services.keys()
    }

    fn list(&self, service: &ServiceName) -> Vec<Instance> {
        self.services.get(service).cloned().unwrap_or_default()
    }
}

impl TryFrom<StaticConfig> for StaticRegistry {
    type Error = RegistryError;
    fn try_from(config: StaticConfig) -> Result<Self, Self::Error> {
        StaticRegistry::from_config(config)
    }
}

impl Registry for StaticRegistry {
    /// Always fails with [`RegistryError::Unsupported`].
    fn register(
        &self,
        _instance: Instance,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        Box::pin(async {
            Err(RegistryError::Unsupported {
                backend: BACKEND,
                operation: "register",
            })
        })
    }

    /// Always fails with [`RegistryError::Unsupported`].
    fn deregister<'a>(&'a self, _id: &'a InstanceId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async {
            Err(RegistryError::Unsupported {
                backend: BACKEND,
                operation: "deregister",
            })
        })
    }

    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Vec<Instance>, RegistryError>> {
        let list = self.list(service);
        Box::pin(async move { Ok(list) })
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        let snapshot = WatchEvent::Snapshot(self.list(service));
        Box::pin(
            futures_util::stream::once(async move { snapshot })
                .chain(futures_util::stream::pending()),
        )
    }
}
