//! What every service shares: its SQLite file, its HTTP host (observe
//! layers, health, graceful shutdown that deregisters first) and its
//! clients to other services (discovery + resilience).
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use ecommerce::platform::{ServiceClient, open_db, serve};
//! let dir = tempfile::tempdir()?;
//! let registry = msp_discovery::MemoryRegistry::new();
//! let db = open_db(dir.path(), "hello.db").await?;
//! let routes = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
//! let running = serve("hello-service", routes, db, &registry, "127.0.0.1:0".parse()?).await?;
//!
//! // Called by name, through the registry.
//! let client = ServiceClient::new(&registry, "hello-service")?;
//! let reply = client.send(http::Method::GET, "/hello", None, None).await?;
//! assert_eq!(reply.body, "hi");
//! running.stop().await?;
//! # Ok(())
//! # }
//! ```

mod crash;
pub mod settings;

use axum::Router;
use axum::extract::MatchedPath;
use bytes::Bytes;
use crash::{CrashSwitch, MakePeerIdentity};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use msp_core::backoff::Backoff;
use msp_core::health::{Check, HealthRegistry};
use msp_core::http::{HttpErrorLayer, Problem};
use msp_core::identity::TrustDomain;
use msp_core::observe::{self, PropagateTraceContextLayer, metrics as red};
use msp_core::shutdown::{DrainLayer, Shutdown, ShutdownReport};
use msp_core::tls::dev::ensure_dir;
use msp_core::tls::{IdentityFiles, Mode, MtlsListener, WorkloadIdentity};
use msp_core::{BoxError, Instance};
use msp_discovery::{DiscoveryClient, MemoryRegistry, Registry};
use msp_resilience::chaos::{ChaosConfig, ChaosHandle, ChaosLayer, InjectedFault};
use msp_resilience::circuit_breaker::{Breaker, CircuitBreakerConfig, CircuitBreakerLayer};
use msp_resilience::retry::ReplayBody;
use msp_resilience::{ResilienceBuilderExt, RetryLayer};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tower::ServiceBuilder;
use tower::util::{BoxCloneSyncService, ServiceExt};

/// Opens (creating if needed) the SQLite file `name` under `dir`, in WAL
/// mode with a busy timeout, and runs msp-saga's migrations (outbox, inbox
/// and saga tables) so any service can use them.
pub async fn open_db(dir: &Path, name: &str) -> Result<SqlitePool, BoxError> {
    std::fs::create_dir_all(dir)?;
    let options = SqliteConnectOptions::new()
        .filename(dir.join(name))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    msp_saga::migrate_sqlite(&pool).await?;
    Ok(pool)
}

/// The system's workload identities: a development CA for trust domain
/// `shop` and a certificate per service in one directory, created on first
/// run and reused after (msp-core's [`ensure_dir`]).
#[derive(Debug, Clone)]
pub struct Security {
    dir: PathBuf,
    trust_domain: TrustDomain,
}

impl Security {
    /// The trust domain of the example's services.
    pub const TRUST_DOMAIN: &'static str = "shop";

    /// Makes `dir` hold the CA and a valid certificate for each of
    /// `services` (issuing what is missing or expiring).
    pub fn dev(dir: impl Into<PathBuf>, services: &[&str]) -> Result<Self, BoxError> {
        let dir = dir.into();
        let trust_domain = TrustDomain::new(Self::TRUST_DOMAIN)?;
        for (service, issued) in ensure_dir(&dir, &trust_domain, services)? {
            tracing::debug!(%service, ?issued, dir = %dir.display(), "workload certificate");
        }
        Ok(Security { dir, trust_domain })
    }

    /// Where the CA and the certificates are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// `service`'s workload identity, loaded from its files.
    pub fn identity(&self, service: &str) -> Result<WorkloadIdentity, BoxError> {
        Ok(WorkloadIdentity::from_files(IdentityFiles::in_dir(
            &self.dir, service,
        ))?)
    }
}

/// One service, running: its address, its shutdown coordinator, its
/// health registry and the server task.
#[derive(Debug)]
pub struct Running {
    /// The service name it is registered under (`order-service`…).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Trigger it to stop the service (deregister → drain → stop).
    pub shutdown: Shutdown,
    /// Its `/health/*` registry.
    pub health: HealthRegistry,
    task: JoinHandle<std::io::Result<ShutdownReport>>,
    crash: CrashSwitch,
    server: AbortHandle,
}

impl Running {
    /// Kills the instance the way a crashed process dies: its listener is
    /// dropped (new connections are refused) and every open connection is
    /// cut, requests in flight included. Nothing graceful runs: it stays
    /// registered (its lease kept alive), so only the callers' own
    /// defences — retries, outlier ejection — keep them from failing.
    /// [`stop`](Self::stop) still deregisters it afterwards.
    pub fn crash(&self) {
        self.crash.throw();
        self.server.abort();
    }

    /// Triggers the shutdown and waits for the sequence to finish.
    pub async fn stop(self) -> Result<ShutdownReport, BoxError> {
        self.shutdown.trigger();
        Ok(self.task.await??)
    }
}

/// Serves `routes` as service `name` on `bind`: wrapped in msp-core's
/// observe layer (request id, W3C trace context, RED metrics labelled by
/// route template), with `/health/live` and `/health/ready` (a readiness
/// check on `db`), registered in `registry` with a 10 s lease that is
/// deregistered before the server drains.
pub async fn serve(
    name: &'static str,
    routes: Router,
    db: SqlitePool,
    registry: &MemoryRegistry,
    bind: SocketAddr,
) -> Result<Running, BoxError> {
    serve_with_tls(name, routes, db, registry, bind, None).await
}

/// [`serve`], and with `identity` over mTLS in permissive mode: peers that
/// present a certificate are verified (their SPIFFE ID reaches the handlers
/// and authorization policies as a `PeerIdentity`), plaintext clients — the
/// gateway, the demo's direct reads — are served as unauthenticated peers.
pub async fn serve_with_tls(
    name: &'static str,
    routes: Router,
    db: SqlitePool,
    registry: &MemoryRegistry,
    bind: SocketAddr,
    identity: Option<&WorkloadIdentity>,
) -> Result<Running, BoxError> {
    let health = HealthRegistry::new();
    let shutdown = Shutdown::builder()
        .health(health.clone())
        .drain_timeout(Duration::from_secs(5))
        .build();
    health.register(
        Check::new("sqlite", move || {
            let db = db.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&db)
                    .await
                    .map(|_| ())
                    .map_err(|_| "sqlite unreachable")
            }
        })
        .readiness_only()
        .timeout(Duration::from_secs(1)),
    );
    let observe = observe::layer(name).route_fn(|uri, ext| {
        ext.get::<MatchedPath>()
            .map_or_else(|| red::collapse_path(uri.path()), |p| p.as_str().to_owned())
    });
    let app = routes
        .layer(observe)
        .route_service("/health/live", health.service())
        .route_service("/health/ready", health.service())
        .layer(DrainLayer::new(&shutdown));

    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    registry
        .register(
            Instance::parse(name, &addr.to_string())?,
            Duration::from_secs(10),
        )
        .await?
        .deregister_before_drain(&shutdown, Duration::from_secs(2));

    let signal = shutdown.stop_accepting();
    let crash = CrashSwitch::new();
    let serving: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match identity {
            Some(identity) => {
                let mtls = MtlsListener::builder(identity)
                    .mode(Mode::Permissive)
                    .build(listener)?;
                Box::pin(
                    axum::serve(crash.wrap(mtls), MakePeerIdentity(app))
                        .with_graceful_shutdown(signal)
                        .into_future(),
                )
            }
            None => Box::pin(
                axum::serve(crash.wrap(listener), app)
                    .with_graceful_shutdown(signal)
                    .into_future(),
            ),
        };
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let served = serving.await;
            shutdown.trigger();
            served
        }
    });
    let server_abort = server.abort_handle();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let report = shutdown.run().await;
            match tokio::time::timeout(Duration::from_secs(2), server).await {
                Ok(Ok(served)) => served?,
                // Crashed (`Running::crash`): nothing left to stop.
                Ok(Err(join)) if join.is_cancelled() => {}
                Ok(Err(join)) => return Err(std::io::Error::other(join)),
                Err(_elapsed) => tracing::warn!(service = name, "connections still open"),
            }
            Ok(report)
        }
    });
    tracing::info!(service = name, %addr, "service started");
    Ok(Running {
        name,
        addr,
        shutdown,
        health,
        task,
        crash,
        server: server_abort,
    })
}

/// `routes` behind a chaos switch, off until the returned handle enables
/// it: an injected fault answers `503` `injected_fault` (problem+json)
/// without calling the routes, as a failing instance would.
pub fn with_chaos(routes: Router) -> Result<(Router, ChaosHandle), BoxError> {
    let chaos = ChaosLayer::new(ChaosConfig {
        enabled: false,
        error_rate: 1.0,
        ..ChaosConfig::default()
    })?;
    let handle = chaos.handle();
    let errors = HttpErrorLayer::new().map(|_: &InjectedFault| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "injected_fault",
            "chaos: fault injected by the dashboard or the demo",
        )
    });
    let routes = routes.layer(ServiceBuilder::new().layer(errors).layer(chaos));
    Ok((routes, handle))
}

type Stack = BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<msp_discovery::ResponseBody>,
    BoxError,
>;

/// A client to one service, by name (`http://inventory-service/…`):
/// msp-discovery's [`DiscoveryClient`] under a 2 s timeout, retries of
/// idempotent calls (safe methods or an `Idempotency-Key`) and a circuit
/// breaker of its own, with the W3C trace context propagated.
#[derive(Clone)]
pub struct ServiceClient {
    service: &'static str,
    stack: Stack,
    breaker: Breaker,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// An answer from another service: its status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

impl ServiceClient {
    /// A client to `service`, resolved through `registry`. Its breaker,
    /// named after the service, opens after 5 consecutive failures (a
    /// `5xx`, a timeout or a transport error) and lets a probe through
    /// after 2 s (longer after each trip in a row).
    pub fn new(registry: &MemoryRegistry, service: &'static str) -> Result<Self, BoxError> {
        Self::with_identity(registry, service, None)
    }

    /// [`new`](Self::new), calling over mTLS as `identity` when given: the
    /// instance must prove it is `spiffe://{trust domain}/{service}`.
    pub fn with_identity(
        registry: &MemoryRegistry,
        service: &'static str,
        identity: Option<&WorkloadIdentity>,
    ) -> Result<Self, BoxError> {
        let mut builder = DiscoveryClient::builder(registry.clone());
        if let Some(identity) = identity {
            builder = builder.tls(identity.clone());
        }
        let client = builder.build::<ReplayBody<Full<Bytes>>>();
        let retry = RetryLayer::idempotent_http()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(50))?);
        let breaker = Breaker::new(
            CircuitBreakerConfig::builder()
                .name(service)
                .consecutive_failures(5)
                .open_duration(Duration::from_secs(2))
                .build()?,
        );
        let breaker_layer =
            CircuitBreakerLayer::from_breaker(breaker.clone()).classify_http_status();
        let stack = ServiceBuilder::new()
            .msp_timeout(Duration::from_secs(2))
            .msp_retry(retry)
            .msp_circuit_breaker(breaker_layer)
            .layer(PropagateTraceContextLayer::new())
            .service(client)
            .map_err(Into::<BoxError>::into);
        Ok(ServiceClient {
            service,
            stack: BoxCloneSyncService::new(stack),
            breaker,
        })
    }

    /// The service this client calls.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The client's circuit breaker (shared by its clones).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Sends `method path` with an optional JSON body and `Idempotency-Key`,
    /// and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, BoxError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.service));
        if let Some(key) = idempotency_key {
            req = req.header(msp_core::http::header::IDEMPOTENCY_KEY, key);
        }
        let req = match body {
            Some(json) => req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(json)?)))?,
            None => req.body(Full::new(Bytes::new()))?,
        };
        let res = self.stack.clone().oneshot(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
}
