//! An API gateway as a tower `Service` and a standalone binary.
//!
//! `msp-gateway` puts the seed's routes —
//! `path: "/api/users/*"`, `service`, `methods`, `auth_required`,
//! `rate_limit: 1000/hour` — in front of upstream services found through
//! service discovery, with RFC 9110/9112-correct proxying, resilience per
//! upstream service, rate limits, API-key and JWT auth, metrics, an access log,
//! hot reload and an admin listener.
//!
//! | module | what it gives you |
//! |---|---|
//! | [`config`] | [`GatewayConfig`](config::GatewayConfig) from YAML or a builder; every problem names route, field and line |
//! | [`route`] | the [`RouteTable`](route::RouteTable): path params and wildcards, methods (405 + `Allow`), host, header and query predicates, most specific first |
//! | [`proxy`] | the pooled [`ProxyClient`](proxy::ProxyClient), hop-by-hop and forwarding headers, request validation, upgrades |
//! | [`auth`] | [`ApiKeyAuth`](auth::ApiKeyAuth) (consumers by SHA-256 digests of their keys) and [`JwtAuth`](auth::JwtAuth) (pinned algorithms, JWKS from a URL or file, refetch on unknown `kid`, last good keys on outage); identity headers stripped then set; 401/403 with `WWW-Authenticate` |
//! | [`cache`] | the RFC 9111 response cache a route's `cache_ttl` turns on: moka, bounded in bytes, keyed by route + method + host + path + query + `Vary`, coalesced misses, `X-Cache`/`Age`, purge through the admin listener |
//! | [`transform`] | per-route request/response header add/set/remove/rename and JSON response field allow/deny/rename (dotted paths, arrays element-wise; only configured routes buffer, up to 1 MiB) |
//! | [`upstream`] | per service: registry view, balancer (p2c peak-EWMA by default), health checks, outlier ejection and **one circuit breaker per upstream service** |
//! | [`gateway`] | the [`Gateway`] service: an `ArcSwap`'d snapshot of the table and per-route stacks, reload and file hot reload, serving (HTTP/1.1 + h2c) |
//! | [`bff`] | backends for frontends: [`Aggregate`](bff::Aggregate) endpoints fanning out to several backends (timeouts, `required`, partial markers, sequential steps, collections), per-client shaping (web, mobile, MessagePack/CBOR/protobuf for IoT, `?fields=`), in the gateway (`aggregates:`) or your own axum service |
//! | [`admin`] | the admin listener: routes, upstreams, breakers, limiters, config version and last reload error, Prometheus `/metrics` |
//!
//! # Where it sits
//!
//! msp-gateway is msp's **composition tier**: it depends on msp-core,
//! msp-resilience, msp-discovery and msp-config, and nothing but examples
//! and benches depends on it. The pattern crates never depend on each
//! other or on the gateway; what they share lives in msp-core.
//!
//! ```text
//! tier 3  msp-gateway ──> msp-resilience, msp-discovery, msp-config, msp-core
//! tier 2  msp-resilience   msp-discovery   msp-config   msp-saga
//! tier 1  msp-core
//! ```
//!
//! # A request's way through
//!
//! ```text
//! validate (400/413/414/431) → match (404/405) → rate limit (429) → auth (401)
//!   → request header transforms → path rewrite → timeout (504) → bulkhead (503) → retry (idempotent, ≤ 64 KiB replay)
//!   → the service's circuit breaker (503) → balancer pick → pooled client (502/503/504)
//!   → response header and JSON transforms (cache hits too) → client
//! ```
//!
//! Each route gets its own stack built from its config (linkerd's
//! per-target stacks); upstream state — endpoints, health, ejections,
//! latency, the breaker — is per service and shared by every route to it.
//!
//! # Example
//!
//! The gateway as a library: two services behind two routes.
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use msp_gateway::Gateway;
//! use msp_gateway::config::GatewayConfig;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! async fn upstream(name: &'static str) -> std::io::Result<std::net::SocketAddr> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     let app = axum::Router::new().fallback(move || async move { name });
//!     tokio::spawn(async move { axum::serve(listener, app).await });
//!     Ok(addr)
//! }
//! let (users, orders) = (upstream("users").await?, upstream("orders").await?);
//!
//! let config = GatewayConfig::from_yaml(&format!(r#"
//! routes:
//!   - path: "/api/users/*"
//!     service: user-service
//!     methods: ["GET"]
//!   - path: "/api/orders/*"
//!     service: order-service
//!     rate_limit: 1/hour
//! services:
//!   user-service: {{ instances: ["{users}"] }}
//!   order-service: {{ instances: ["{orders}"] }}
//! "#), "inline")?;
//! let gateway = Gateway::from_config(config).await?;
//!
//! let get = |path: &str| http::Request::get(path).header("host", "gw").body(Empty::<bytes::Bytes>::new());
//! let res = gateway.clone().oneshot(get("/api/users/1")?).await?;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "users");
//! let res = gateway.clone().oneshot(get("/api/orders/1")?).await?;
//! assert_eq!(res.status(), 200);
//! let res = gateway.clone().oneshot(get("/api/orders/1")?).await?;
//! assert_eq!(res.status(), 429);
//! assert!(res.headers().contains_key("retry-after"));
//!
//! // Serve it: `gateway.serve(listener).await`, or as an axum fallback:
//! let _app: axum::Router = axum::Router::new().fallback_service(gateway);
//! # Ok(())
//! # }
//! ```
//!
//! The standalone binary runs the same from a file, hot-reloading it:
//! `cargo run -p msp-gateway -- --config gateway.yaml` (see the README).
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `etcd` | `registry: {etcd: …}` — upstream instances registered in etcd |
//! | `redis` | `rate_limit_store: {redis: …}` — every route limit counted in Redis, shared across gateway replicas (msp-resilience's GCRA script) |
//! | `dns` | `registry: dns` — upstream instances from DNS SRV or `host:port` records (msp-discovery's `DnsDiscovery`) |
//! | `axum` | the client address also read from axum's `ConnectInfo<SocketAddr>`, for the gateway as an axum fallback service |
//!
//! JWT signatures are verified by `jsonwebtoken` with exactly one crypto
//! backend, `rust_crypto`: pure Rust, so building needs no C toolchain
//! (see [`auth`] for why RUSTSEC-2023-0071 does not apply to verifying).
//!
//! Without features the registry is in memory (the services' static
//! instances, plus anything registered at run time) or static: nothing to
//! install.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
pub mod auth;
pub mod bff;
pub mod cache;
pub mod config;
pub mod gateway;
pub mod proxy;
pub mod route;
pub mod transform;
pub mod upstream;

pub use crate::gateway::{Body, BuildError, Gateway};
