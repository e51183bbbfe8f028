//! The registry backends: each one implements [`Registry`](crate::registry::Registry).
//!
//! | backend | feature | registration | watch |
//! |---|---|---|---|
//! | [`MemoryRegistry`] | always | in-process leases expiring on tokio time | in-process changes |
//! | [`StaticRegistry`] | always | refused (`Unsupported`) | one snapshot of a fixed list from config |
//! | `EtcdRegistry` | `etcd` | an etcd lease per instance, keep-alive stream | prefix watch resuming from its last revision |
//! | `ZooKeeperRegistry` | `zookeeper` | an ephemeral znode in a session of its own (timeout = TTL) | persistent recursive watch, re-armed and re-listed after reconnection |
//! | `DnsDiscovery` | `dns` | refused (`Unsupported`) | SRV / A / AAAA lookups refreshed on their TTL |
//!
//! The backends only know how to store, list and watch instances. What is
//! shared by all of them lives beside this folder in
//! [`registry`](crate::registry): the [`Registration`](crate::registry::Registration)
//! handle (heartbeats, re-registration, deregistration) that a backend
//! drives through its [`Lease`](crate::registry::Lease), the
//! [`Registrar`](crate::registry::Registrar) for third-party registration
//! and the outage-proof [`ServiceView`](crate::registry::ServiceView).
//!
//! Every type is re-exported from [`registry`](crate::registry) and from
//! the crate root (`msp_discovery::MemoryRegistry`), which is where user
//! code names them.
//!
//! # Example
//!
//! A backend chosen at run time, behind the object-safe trait:
//!
//! ```
//! use msp_core::ServiceName;
//! use msp_discovery::registry::backend::{MemoryRegistry, StaticRegistry};
//! use msp_discovery::Registry;
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let from_config = true;
//! let registry: Arc<dyn Registry> = if from_config {
//!     Arc::new(StaticRegistry::from_json(
//!         r#"{"services": {"orders": [{"addr": "10.0.0.1:8080"}]}}"#,
//!     )?)
//! } else {
//!     Arc::new(MemoryRegistry::new())
//! };
//! let orders = ServiceName::new("orders")?;
//! assert_eq!(registry.instances(&orders).await?.len(), 1);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod memory;
pub mod static_list;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

#[cfg(feature = "dns")]
pub use self::dns::{DnsDiscovery, DnsTarget};
#[cfg(feature = "etcd")]
pub use self::etcd::EtcdRegistry;
pub use self::memory::MemoryRegistry;
pub use self::static_list::{StaticConfig, StaticRegistry};
#[cfg(feature = "zookeeper")]
pub use self::zookeeper::ZooKeeperRegistry;
