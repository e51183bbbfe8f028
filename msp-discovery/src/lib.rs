//! Service discovery for tower: registries, health checks, outlier
//! ejection, load balancing and a discovery-aware HTTP client.
//!
//! | module | what it gives you |
//! |---|---|
//! | [`registry`] | the [`Registry`] trait: register with a lease that heartbeats and re-registers, list, watch; [`ServiceView`], the cached instance set that survives registry outages; [`Registrar`] for third-party registration |
//! | [`registry::backend`] | the backends: [`MemoryRegistry`] (embedded default), [`StaticRegistry`], `EtcdRegistry` (`etcd`), `ZooKeeperRegistry` (`zookeeper`), `DnsDiscovery` (`dns`) |
//! | [`balance`] | [`EndpointSet`] and the strategies: round robin, random, weighted, power of two choices over peak EWMA, consistent hashing, zone preference, panic mode |
//! | [`health`] | active checks (HTTP, TCP, custom) taking failing instances out of balancing |
//! | [`outlier`] | passive ejection from real traffic (consecutive failures, failure rate), growing ejection times, max ejected percent |
//! | [`discover`] | tower's `Discover` over a registry watch, for `tower::balance` — never yields an error |
//! | [`client`] | [`DiscoveryClient`], a tower `Service<http::Request<B>>` sending `http://order-service/…` to a live instance over pooled connections |
//! | `tonic` | feeds tonic's `Channel::balance_channel` from a registry (feature `tonic`) |
//!
//! # The registry half
//!
//! - **Self-registration.** [`Registry::register`] stores an instance under
//!   a lease with a TTL and returns a [`Registration`]. Its background task
//!   renews the lease with jittered heartbeats (about every `ttl / 3`),
//!   retries a failed renewal with backoff while the lease may still be
//!   alive, and **registers again on its own** once the lease is known lost
//!   (the registry restarted or expired it during a partition). It
//!   deregisters when dropped, when [`Registration::deregister`] is awaited,
//!   or as a step of msp-core's graceful shutdown
//!   ([`Registration::deregister_before_drain`]: after the service is
//!   marked not ready, before the server drains).
//! - **Third-party registration.** A [`Registrar`] registers instances it
//!   health-checks itself (Consul/Eureka style): registered while healthy,
//!   deregistered after a number of failed checks.
//! - **Backends.** [`MemoryRegistry`] (the embedded default, in-process,
//!   with real TTL expiry), [`StaticRegistry`] (a fixed list from config),
//!   `EtcdRegistry` (feature `etcd`: a lease per instance, JSON under a key
//!   prefix, a prefix watch that resumes from its last revision and lists
//!   again after a compaction), `ZooKeeperRegistry` (feature `zookeeper`:
//!   an ephemeral znode in a session per instance, a persistent recursive
//!   watch re-armed and re-listed after reconnection) and `DnsDiscovery`
//!   (feature `dns`: SRV and A/AAAA lookups refreshed on their TTL, for
//!   Kubernetes headless services). All implement the one [`Registry`] trait, object safe.
//! - **Watching and outages.** [`Registry::watch`] is a stream of
//!   [`WatchEvent`]s that never ends: a backend failure is a
//!   [`WatchEvent::Stale`], not an error or an empty list. A
//!   [`ServiceView`] turns it into the last known instances of a service
//!   (a lock-free `Arc<[Instance]>` snapshot). While the registry is
//!   unreachable the view **keeps serving the last known instances** —
//!   never an empty set because a lookup failed — reports it
//!   (`msp_discovery_stale{service}` gauge = 1, a warning log,
//!   [`ServiceView::is_stale`]) and reconciles from a fresh answer when
//!   the registry is back.
//!
//! # The balancing half
//!
//! An [`EndpointSet`] follows a view and picks
//! instances with a [`Strategy`]: round robin, random,
//! weighted, power of two choices over peak-EWMA latency (O(1) picks),
//! consistent hashing by a request key (O(log n)), with zone preference
//! falling back to all zones. Instances failing [active health
//! checks](health) or [ejected](outlier) for failing real traffic
//! (consecutive failures, failure rate, ejection time growing with each
//! ejection, a max ejected percent) receive no traffic until they recover.
//!
//! [`DiscoveryClient`] puts it together as a tower
//! `Service<http::Request<B>>`: `http://order-service/path` is resolved
//! through the registry, sent to a picked instance over pooled hyper-util
//! connections, and the outcome feeds back into outlier ejection.
//! **Client-side discovery** is a `DiscoveryClient` in the caller;
//! **server-side discovery** is a gateway using one. Either way the client
//! is a plain tower service, so timeouts, retries and circuit breakers
//! (msp-resilience, or tower's) wrap it like any other. For
//! `tower::balance`, [`discover`] implements tower's `Discover` over a
//! watch (never yielding an error, which would fail `Balance::poll_ready`).
//!
//! # Example
//!
//! Two instances register themselves; a client balances across them; on
//! shutdown one deregisters and the client stops sending to it.
//!
//! ```
//! use axum::{Router, routing::get};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use msp_core::{Instance, ServiceName};
//! use msp_core::shutdown::Shutdown;
//! use msp_discovery::balance::{BalanceConfig, Strategy};
//! use msp_discovery::{DiscoveryClient, MemoryRegistry, Registry};
//! use std::time::Duration;
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let shutdowns = [Shutdown::new(), Shutdown::new()];
//! for (name, shutdown) in ["one", "two"].into_iter().zip(&shutdowns) {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     tokio::spawn(async move {
//!         axum::serve(listener, Router::new().route("/", get(move || async move { name }))).await
//!     });
//!     // Self-registration: heartbeats until the process shuts down.
//!     let me = Instance::parse("greeter", &addr.to_string())?;
//!     registry
//!         .register(me, Duration::from_secs(10))
//!         .await?
//!         .deregister_before_drain(shutdown, Duration::from_secs(2));
//! }
//!
//! let mut client = DiscoveryClient::builder(registry)
//!     .balance(BalanceConfig::builder().strategy(Strategy::RoundRobin).build()?)
//!     .build::<Empty<Bytes>>();
//! let mut answers = Vec::new();
//! for _ in 0..2 {
//!     let req = http::Request::get("http://greeter/").body(Empty::new())?;
//!     let res = client.ready().await?.call(req).await?;
//!     answers.push(res.into_body().collect().await?.to_bytes());
//! }
//! answers.sort();
//! assert_eq!(answers, ["one", "two"]);
//!
//! // Instance "one" shuts down (SIGTERM in a real process): it deregisters
//! // before draining, and the client's set follows.
//! shutdowns[0].trigger();
//! shutdowns[0].run().await;
//! let greeter = ServiceName::new("greeter")?;
//! let endpoints = client.endpoints(&greeter).ok_or("resolved above")?;
//! endpoints.wait_for(|set| set.endpoints().len() == 1).await;
//! let req = http::Request::get("http://greeter/").body(Empty::new())?;
//! let res = client.ready().await?.call(req).await?;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "two");
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `etcd` | `EtcdRegistry` (etcd v3: leases, keep-alive, prefix watch) |
//! | `zookeeper` | `ZooKeeperRegistry` (Apache ZooKeeper ≥ 3.6: ephemeral znodes, session per registration, persistent recursive watches) |
//! | `dns` | `DnsDiscovery` (SRV and A/AAAA lookups) |
//! | `tonic` | the `tonic` module |
//! | `tls` | `DiscoveryClientBuilder::tls`: calls over mTLS with msp-core's SPIFFE workload identity, checking the server's identity per service |
//!
//! Everything else — the memory and static registries, balancing, health
//! checks, outlier ejection, `Discover` and the HTTP client — is always on.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod balance;
pub mod client;
pub mod discover;
pub mod health;
pub mod outlier;
pub mod registry;
#[cfg(feature = "tonic")]
pub mod tonic;

pub use crate::balance::{BalanceConfig, EndpointSet, Strategy};
pub use crate::client::{
    DiscoveryClient, DiscoveryClientBuilder, DiscoveryError, HashKey, ResponseBody, TransportKind,
};
pub use crate::discover::ServiceDiscover;
pub use crate::health::{HealthCheck, HealthCheckConfig};
pub use crate::outlier::OutlierConfig;
#[cfg(feature = "etcd")]
pub use crate::registry::EtcdRegistry;
#[cfg(feature = "zookeeper")]
pub use crate::registry::ZooKeeperRegistry;
#[cfg(feature = "dns")]
pub use crate::registry::{DnsDiscovery, DnsTarget};
pub use crate::registry::{
    Lease, MemoryRegistry, Registrar, RegistrarHandle, Registration, RegistrationConfig,
    RegistrationStatus, Registry, RegistryError, ServiceView, StaticConfig, StaticRegistry,
    ViewState, WatchEvent, WatchStream,
};
