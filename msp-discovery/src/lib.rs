//! Service discovery for tower: registries, health checks, outlier
//! ejection, load balancing and a discovery-aware HTTP client.
//!
//! | module | what it gives you |
//! |---|---|
//! | [`registry`] | the [`Registry`](registry::Registry) trait: register with a lease that heartbeats and re-registers, list, watch; backends `MemoryRegistry` (embedded default), `StaticRegistry`, `EtcdRegistry` (`etcd`), `DnsDiscovery` (`dns`); [`ServiceView`](registry::ServiceView), the cached instance set that survives registry outages |
//! | [`balance`] | [`EndpointSet`](balance::EndpointSet) and the strategies: round robin, random, weighted, power of two choices over peak EWMA, consistent hashing, zone preference, panic mode |
//! | [`health`] | active checks (HTTP, TCP, custom) taking failing instances out of balancing |
//! | [`outlier`] | passive ejection from real traffic (consecutive failures, failure rate), growing ejection times, max ejected percent |
//! | [`discover`] | tower's `Discover` over a registry watch, for `tower::balance` — never yields an error |
//! | [`client`] | [`DiscoveryClient`](client::DiscoveryClient), a tower `Service<http::Request<B>>` sending `http://order-service/…` to a live instance over pooled connections |
//! | `tonic` | feeds tonic's `Channel::balance_channel` from a registry (feature `tonic`) |
//!
//! **Client-side discovery** is a `DiscoveryClient` in the caller;
//! **server-side discovery** is a gateway using one. Either way the client
//! is a plain tower service, so timeouts, retries and circuit breakers
//! (msp-resilience, or tower's) wrap it like any other.
//!
//! # Example
//!
//! Two instances register themselves; a client balances across them.
//!
//! ```
//! use axum::{Router, routing::get};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use msp_core::Instance;
//! use msp_discovery::balance::{BalanceConfig, Strategy};
//! use msp_discovery::client::DiscoveryClient;
//! use msp_discovery::registry::{MemoryRegistry, Registry};
//! use std::time::Duration;
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let mut registrations = Vec::new();
//! for name in ["one", "two"] {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     tokio::spawn(async move {
//!         axum::serve(listener, Router::new().route("/", get(move || async move { name }))).await
//!     });
//!     // Self-registration: heartbeats until dropped.
//!     let me = Instance::parse("greeter", &addr.to_string())?;
//!     registrations.push(registry.register(me, Duration::from_secs(10)).await?);
//! }
//!
//! let mut client = DiscoveryClient::builder(registry)
//!     .balance(BalanceConfig::new(Strategy::RoundRobin))
//!     .build::<Empty<Bytes>>()?;
//! let mut answers = Vec::new();
//! for _ in 0..2 {
//!     let req = http::Request::get("http://greeter/").body(Empty::new())?;
//!     let res = client.ready().await?.call(req).await?;
//!     answers.push(res.into_body().collect().await?.to_bytes());
//! }
//! answers.sort();
//! assert_eq!(answers, ["one", "two"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `etcd` | `EtcdRegistry` (etcd v3: leases, keep-alive, prefix watch) |
//! | `dns` | `DnsDiscovery` (SRV and A/AAAA lookups) |
//! | `tonic` | the `tonic` module |
//!
//! Everything else — the memory and static registries, balancing, health
//! checks, outlier ejection, `Discover` and the HTTP client — is always on.

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod balance;
pub mod client;
pub mod discover;
pub mod health;
pub mod outlier;
pub mod registry;
#[cfg(feature = "tonic")]
pub mod tonic;
