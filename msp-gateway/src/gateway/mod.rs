//! The [`Gateway`]: a tower `Service` routing requests to upstream
//! services, and its hot-reloaded snapshot.
//!
//! A `Gateway` is cheap to clone (one `Arc`); every clone serves from the
//! same **snapshot**: the route table and, per route, its stack —
//! limiter → auth → path rewrite → timeout → bulkhead → retry → the
//! upstream service's breaker → balancer → pooled client. The snapshot
//! sits in an [`ArcSwap`]: a request loads it once and
//! keeps it to the end, so [`Gateway::reload`] applies to new requests
//! while in-flight ones finish on the snapshot they started with.
//!
//! A reload builds a **whole** new snapshot or nothing: an invalid config
//! (or one whose registry cannot be set up) is rejected, the last good
//! snapshot stays, and the error is logged, counted in
//! `msp_gateway_reload_errors_total` and kept for the admin listener
//! ([`Gateway::status`]). Upstreams, registries and rate limiters whose
//! settings did not change are carried over, so a reload resets no
//! breaker, ejection or quota.
//!
//! The client address (for `X-Forwarded-For`, `Forwarded` and per-IP
//! limits) is the request's `SocketAddr` extension, which
//! [`Gateway::serve`] sets; with the `axum` feature the gateway also reads
//! axum's `ConnectInfo<SocketAddr>`, so as a `Router::fallback_service`
//! served with `into_make_service_with_connect_info::<SocketAddr>()` it
//! needs no code of yours. Without either, the client is `0.0.0.0`.
//!
//! Hot reload from a file: [`Gateway::watch_file`] (through msp-config's
//! directory watcher, so editor saves and Kubernetes ConfigMap swaps are
//! seen).
//!
//! # Example
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use msp_gateway::config::GatewayConfig;
//! use msp_gateway::Gateway;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! // An upstream.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let app = axum::Router::new().route("/users/{id}", axum::routing::get(|| async { "a user" }));
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let yaml = format!(r#"
//! routes:
//!   - path: "/api/users/*"
//!     service: user-service
//!     strip_prefix: "/api"
//! services:
//!   user-service:
//!     instances: ["{addr}"]
//! "#);
//! let gateway = Gateway::from_config(GatewayConfig::from_yaml(&yaml, "inline")?).await?;
//!
//! let req = http::Request::get("/api/users/7").header("host", "gw").body(Empty::<bytes::Bytes>::new())?;
//! let res = gateway.clone().oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "a user");
//!
//! // No route: a problem+json 404.
//! let req = http::Request::get("/nowhere").header("host", "gw").body(Empty::<bytes::Bytes>::new())?;
//! assert_eq!(gateway.oneshot(req).await?.status(), 404);
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod handle;
mod limit;
mod log;
mod routes;
mod serve;
pub(crate) use self::serve::serve_service;
mod snapshot;
mod status;
mod watch;

pub use self::body::Body;
pub use self::error::BuildError;
pub use self::status::{ReloadStatus, RouteStatus, UpstreamStatus};
pub use self::watch::FileWatch;

use self::snapshot::Snapshot;
use crate::config::GatewayConfig;
use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use http::Request;
use msp_core::BoxError;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// The API gateway as a tower `Service` (see the [module docs](self)).
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// The response caches, kept across reloads.
    cache: crate::cache::ResponseCache,
    /// The registry given to [`Gateway::with_registry`], used by every
    /// generation instead of the config's `registry:`.
    external: Option<Arc<snapshot::RegistryEntry>>,
    /// Serialises reloads (a build awaits the registry).
    reloading: tokio::sync::Mutex<()>,
    status: Mutex<status::Reloads>,
    attempts: tokio::sync::watch::Sender<u64>,
}

impl Gateway {
    /// Builds a gateway from a validated config; upstreams start following
    /// their registry at once. Fails if a route or service cannot be built
    /// (the config's own problems are already caught by its loader).
    pub async fn from_config(config: GatewayConfig) -> Result<Gateway, BuildError> {
        Gateway::build(config, None).await
    }

    /// Builds a gateway whose upstream instances come from `registry` —
    /// the one the services register themselves in — instead of the
    /// config's `registry:` section, for this gateway's whole life
    /// (reloads keep it). Services are listed under `services:` as usual
    /// (for their settings) but without static `instances` (a build error
    /// says which service lists some). An instance that deregisters, or whose lease runs
    /// out, leaves the gateway's balancer at once.
    ///
    /// ```
    /// use msp_core::Instance;
    /// use msp_discovery::MemoryRegistry;
    /// use msp_gateway::Gateway;
    /// use msp_gateway::config::GatewayConfig;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), msp_core::BoxError> {
    /// let registry = MemoryRegistry::new();
    /// registry.insert(Instance::parse("user-service", "127.0.0.1:9001")?)?;
    /// let config = GatewayConfig::from_yaml(r#"
    /// routes:
    ///   - path: "/api/users/*"
    ///     service: user-service
    /// services:
    ///   user-service: {} # settings only: the instances are in the registry
    /// "#, "inline")?;
    /// let gateway = Gateway::with_registry(config, registry).await?;
    /// assert_eq!(gateway.upstreams()[0].instances[0].addr, "127.0.0.1:9001");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn with_registry(
        config: GatewayConfig,
        registry: impl msp_discovery::Registry + 'static,
    ) -> Result<Gateway, BuildError> {
        let external = snapshot::RegistryEntry::external(Arc::new(registry));
        Gateway::build(config, Some(external)).await
    }

    async fn build(
        config: GatewayConfig,
        external: Option<Arc<snapshot::RegistryEntry>>,
    ) -> Result<Gateway, BuildError> {
        log::describe();
        msp_core::http::register::<crate::upstream::NoInstance>();
        let snapshot = Snapshot::build(config, 1, None, external.as_ref()).await?;
        snapshot.ready(Duration::from_secs(5)).await;
        metrics::gauge!("msp_gateway_config_version").set(1.0);
        Ok(Gateway {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(snapshot),
                cache: crate::cache::ResponseCache::new(),
                external,
                reloading: tokio::sync::Mutex::new(()),
                status: Mutex::new(status::Reloads::default()),
                attempts: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// Loads `path` ([`GatewayConfig::from_file`]) and builds a gateway.
    pub async fn from_file(path: impl AsRef<std::path::Path>) -> Result<Gateway, BuildError> {
        Gateway::from_config(GatewayConfig::from_file(path)?).await
    }

    /// Replaces the active configuration with `config`, or keeps the
    /// current one and returns why not. Requests already in flight finish
    /// on the snapshot they started with. Returns the new version.
    pub async fn reload(&self, config: GatewayConfig) -> Result<u64, Arc<BuildError>> {
        let _one_at_a_time = self.shared.reloading.lock().await;
        let current = self.shared.current.load_full();
        let version = current.version + 1;
        match Snapshot::build(
            config,
            version,
            Some(&current),
            self.shared.external.as_ref(),
        )
        .await
        {
            Ok(next) => {
                next.ready(Duration::from_secs(5)).await;
                self.shared.current.store(Arc::new(next));
                self.lock_status().accepted(version);
                metrics::counter!("msp_gateway_reloads_total").increment(1);
                metrics::gauge!("msp_gateway_config_version").set(version as f64);
                tracing::info!(version, "gateway configuration reloaded");
                self.shared.attempts.send_modify(|n| *n += 1);
                Ok(version)
            }
            Err(error) => Err(self.rejected(error)),
        }
    }

    /// Loads `path` and [reloads](Self::reload) from it; a file that does
    /// not load is rejected the same way (logged, counted, in
    /// [`status`](Self::status)).
    pub async fn reload_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<u64, Arc<BuildError>> {
        match GatewayConfig::from_file(path) {
            Ok(config) => self.reload(config).await,
            Err(error) => Err(self.rejected(error.into())),
        }
    }

    fn rejected(&self, error: BuildError) -> Arc<BuildError> {
        let error = Arc::new(error);
        tracing::error!(%error, "gateway configuration rejected; the last good one stays active");
        metrics::counter!("msp_gateway_reload_errors_total").increment(1);
        self.lock_status().rejected(&error);
        self.shared.attempts.send_modify(|n| *n += 1);
        error
    }

    /// A receiver of the number of reloads attempted so far (accepted or
    /// rejected); it changes after each one. Wait on it to know a file
    /// change has been handled, then read [`status`](Self::status).
    pub fn reload_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.attempts.subscribe()
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, status::Reloads> {
        self.shared
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version of the active configuration (1 for the first, +1 per
    /// accepted reload).
    pub fn version(&self) -> u64 {
        self.shared.current.load().version
    }

    /// The active configuration.
    pub fn config(&self) -> Arc<GatewayConfig> {
        self.shared.current.load().config.clone()
    }

    /// The routes' response caches (to purge them).
    pub fn cache(&self) -> &crate::cache::ResponseCache {
        &self.shared.cache
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("snapshot", &**self.shared.current.load())
            .finish()
    }
}

impl<B> tower_service::Service<Request<B>> for Gateway
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every limit is per route, decided in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Loaded once: this request finishes on this snapshot even if a
        // reload swaps in another meanwhile.
        let snapshot = self.snapshot();
        let cache = self.shared.cache.clone();
        Box::pin(async move { Ok(handle::handle(snapshot, cache, req.map(Body::new)).await) })
    }
}
