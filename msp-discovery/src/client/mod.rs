//! [`DiscoveryClient`]: an HTTP client that sends `http://order-service/…`
//! to a live instance of `order-service`.
//!
//! A tower [`Service<http::Request<B>>`](tower_service::Service). For each
//! request it
//!
//! 1. reads the service name from the URI authority (`order-service`);
//! 2. resolves it through a [`Registry`] — one cached [`ServiceView`] per
//!    service, so a registry outage keeps the last known instances — into an
//!    [`EndpointSet`];
//! 3. picks an instance with the configured [balancer](crate::balance),
//!    skipping unhealthy and ejected ones (a request key for consistent
//!    hashing comes from a [`HashKey`] extension or a configured header);
//! 4. rewrites the URI to the instance address (keeping the original
//!    authority in `Host`) and sends it over **one pooled hyper-util client
//!    shared by every service and every clone** of the `DiscoveryClient`;
//! 5. classifies the result (msp-core [`HttpClassifier`] by default: errors
//!    and `5xx` fail) and records latency and outcome back into the
//!    endpoint's peak-EWMA estimate and [outlier detection](crate::outlier),
//!    when the response head arrives.
//!
//! Responses carry msp's own body type, [`ResponseBody`] (an
//! [`http_body::Body`] whose errors are [`DiscoveryError`]s too), so no
//! type of the underlying HTTP client appears in the client's signature.
//!
//! Failures are typed ([`DiscoveryError`]): `NoInstances`,
//! `UnknownService`, `InvalidRequest`, `Transport` (with a
//! [`TransportKind`] saying whether the request left). `DiscoveryError`
//! implements msp-core's [`ToProblem`](msp_core::http::ToProblem) and is
//! registered when a client is built, so behind msp-core's
//! [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) it becomes the right
//! RFC 9457 answer (503 `no_instances`, 504 `upstream_timeout`, 502
//! `bad_gateway`…) with no mapping code. The client has no timeout or
//! retry of its own: it is a plain tower service, so msp-resilience's
//! layers (or tower's) wrap it like any other.
//!
//! Optionally it runs [active health checks](crate::health) on every
//! instance it resolves.
//!
//! With the `tls` feature and a workload identity
//! ([`DiscoveryClientBuilder::tls`]), every connection is mutual TLS
//! (msp-core's `MtlsConnector`): the client presents its certificate and
//! accepts an instance only if it proves the identity expected for it — the
//! one configured for its service
//! ([`expect_identity`](DiscoveryClientBuilder::expect_identity)), else
//! `spiffe://{own trust domain}/{service}`. The registry does not choose it:
//! an instance's `spiffe_id` metadata ([`SPIFFE_ID_METADATA`]) is read only
//! after [`trust_registry_identities(true)`](DiscoveryClientBuilder::trust_registry_identities).
//! Connections are pooled per expected identity, never shared across
//! identities.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http_body_util::{BodyExt, Empty};
//! use bytes::Bytes;
//! use msp_core::Instance;
//! use msp_discovery::client::DiscoveryClient;
//! use msp_discovery::registry::MemoryRegistry;
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An instance of "order-service" on a free port.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     axum::serve(listener, Router::new().route("/orders/1", get(|| async { "order 1" }))).await
//! });
//! let registry = MemoryRegistry::new();
//! registry.insert(Instance::parse("order-service", &addr.to_string())?)?;
//!
//! let mut client = DiscoveryClient::builder(registry).build::<Empty<Bytes>>();
//! let req = http::Request::get("http://order-service/orders/1").body(Empty::new())?;
//! let res = client.ready().await?.call(req).await?;
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "order 1");
//!
//! // No such service registered: a typed error a handler maps to 503.
//! let req = http::Request::get("http://nobody/").body(Empty::new())?;
//! let err = client.ready().await?.call(req).await.unwrap_err();
//! assert!(err.is_no_instances());
//! assert_eq!(err.status_code(), http::StatusCode::SERVICE_UNAVAILABLE);
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
pub mod future;
#[cfg(feature = "tls")]
mod tls;

pub use self::body::ResponseBody;
pub use self::error::{DiscoveryError, TransportKind};
use self::future::ResponseFuture;
#[cfg(feature = "tls")]
pub use self::tls::SPIFFE_ID_METADATA;

use crate::balance::{BalanceConfig, Call, EndpointSet};
use crate::health::{HealthCheck, HealthChecks};
use crate::registry::{Registry, ServiceView};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HOST, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::classify::{Classify, HttpClassifier, Outcome};
use msp_core::{BoxError, ServiceName};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::JoinHandle;

type Classifier = dyn Fn(Result<&Response<ResponseBody>, &DiscoveryError>) -> Outcome + Send + Sync;

/// A request extension carrying the key for
/// [consistent hashing](crate::balance::ConsistentHash) (it takes
/// precedence over a configured [hash header](DiscoveryClientBuilder::hash_header)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashKey(pub Bytes);

/// A discovery-aware HTTP client (see the [module docs](self)).
///
/// Cloning is cheap; clones share the connection pool, the resolved
/// services and their balancing state.
pub struct DiscoveryClient<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for DiscoveryClient<B> {
    fn clone(&self) -> Self {
        DiscoveryClient {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<B> {
    registry: Arc<dyn Registry>,
    http: Client<HttpConnector, B>,
    balance: BalanceConfig,
    overrides: HashMap<ServiceName, BalanceConfig>,
    health: Option<HealthCheck>,
    classifier: Arc<Classifier>,
    hash_header: Option<HeaderName>,
    resolve_timeout: Duration,
    allowed: Option<HashSet<ServiceName>>,
    targets: ArcSwap<HashMap<ServiceName, Arc<Target>>>,
    create: Mutex<()>,
    #[cfg(feature = "tls")]
    tls: Option<tls::TlsClients<B>>,
}

/// One resolved service: its view of the registry, its endpoint set, the
/// task keeping the set in line with the view, and its health checks.
pub(crate) struct Target {
    view: ServiceView,
    pub(crate) set: EndpointSet,
    classifier: Arc<Classifier>,
    sync: JoinHandle<()>,
    _health: Option<HealthChecks>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

impl Target {
    /// Records the outcome of a call and maps the error.
    pub(crate) fn finish(
        &self,
        call: Call,
        result: Result<Response<Incoming>, hyper_util::client::legacy::Error>,
    ) -> Result<Response<ResponseBody>, DiscoveryError> {
        let ep = call.endpoint().clone();
        let service = self.set.service().clone();
        let result = match result {
            Ok(res) => Ok(res.map(|body| ResponseBody::new(body, service, ep))),
            Err(source) => Err(DiscoveryError::Transport {
                service,
                instance: ep.id().clone(),
                addr: ep.addr(),
                kind: TransportKind::of_client_error(&source),
                source: Box::new(source),
            }),
        };
        let outcome = (self.classifier)(result.as_ref());
        self.set.record(call, outcome);
        result
    }
}

/// Builds a [`DiscoveryClient`]; from [`DiscoveryClient::builder`].
#[must_use]
pub struct DiscoveryClientBuilder {
    registry: Arc<dyn Registry>,
    balance: BalanceConfig,
    overrides: HashMap<ServiceName, BalanceConfig>,
    health: Option<HealthCheck>,
    classifier: Arc<Classifier>,
    hash_header: Option<HeaderName>,
    resolve_timeout: Duration,
    connect_timeout: Option<Duration>,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    allowed: Option<HashSet<ServiceName>>,
    #[cfg(feature = "tls")]
    tls: tls::TlsSettings,
}

impl DiscoveryClient<()> {
    /// Starts building a client resolving through `registry`; the request
    /// body type is chosen by [`build`](DiscoveryClientBuilder::build).
    pub fn builder(registry: impl Registry) -> DiscoveryClientBuilder {
        DiscoveryClientBuilder::new(Arc::new(registry))
    }
}

impl DiscoveryClientBuilder {
    /// Starts from defaults: [`BalanceConfig::default`] (p2c over peak
    /// EWMA with outlier detection), [`HttpClassifier`], 5 s resolve
    /// timeout, 1 s connect timeout, no health checks.
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        DiscoveryClientBuilder {
            registry,
            balance: BalanceConfig::default(),
            overrides: HashMap::new(),
            health: None,
            classifier: Arc::new(|r| HttpClassifier::new().classify(r)),
            hash_header: None,
            resolve_timeout: Duration::from_secs(5),
            connect_timeout: Some(Duration::from_secs(1)),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: usize::MAX,
            allowed: None,
            #[cfg(feature = "tls")]
            tls: tls::TlsSettings::default(),
        }
    }

    /// Balancing (and outlier detection) for every service.
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.balance = config;
        self
    }

    /// Balancing for one service, overriding [`balance`](Self::balance).
    pub fn balance_for(mut self, service: ServiceName, config: BalanceConfig) -> Self {
        self.overrides.insert(service, config);
        self
    }

    /// Runs this health check on every instance of every resolved service.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// Decides which results count as failures for outlier detection
    /// (default [`HttpClassifier`]: errors and `5xx` fail). It sees the
    /// result the caller gets, when the response head arrives.
    pub fn classifier<C>(mut self, classifier: C) -> Self
    where
        C: Classify<Response<ResponseBody>, DiscoveryError> + Send + Sync + 'static,
    {
        self.classifier = Arc::new(move |r| classifier.classify(r));
        self
    }

    /// Takes the consistent-hashing key from this request header.
    pub fn hash_header(mut self, header: HeaderName) -> Self {
        self.hash_header = Some(header);
        self
    }

    /// How long the first request to a service waits for the registry's
    /// first answer before failing with `NoInstances` (default 5 s).
    pub fn resolve_timeout(mut self, timeout: Duration) -> Self {
        self.resolve_timeout = timeout;
        self
    }

    /// TCP connect timeout (default 1 s; `None` waits for the OS).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long idle pooled connections are kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Idle connections kept per instance (default unbounded).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Resolves only these services; others are `UnknownService` (default:
    /// any valid service name).
    ///
    /// Every service a client has resolved keeps its registry watch (and
    /// health checks) for the client's lifetime, so a client whose request
    /// authorities come from untrusted input should be restricted this way.
    pub fn only_services(mut self, services: impl IntoIterator<Item = ServiceName>) -> Self {
        self.allowed = Some(services.into_iter().collect());
        self
    }

    /// Builds the client for request bodies of type `B`.
    ///
    /// Registers [`DiscoveryError`] with msp-core's
    /// [`HttpErrorLayer`](msp_core::http::HttpErrorLayer)
    /// ([`msp_core::http::register`]), so a stack answering errors as
    /// problems turns the client's errors into the right 5xx answer.
    pub fn build<B>(self) -> DiscoveryClient<B>
    where
        B: http_body::Body + Send + 'static + Unpin,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        msp_core::http::register::<DiscoveryError>();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(self.connect_timeout);
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);
        DiscoveryClient {
            shared: Arc::new(Shared {
                registry: self.registry,
                http,
                balance: self.balance,
                overrides: self.overrides,
                health: self.health,
                classifier: self.classifier,
                hash_header: self.hash_header,
                resolve_timeout: self.resolve_timeout,
                allowed: self.allowed,
                targets: ArcSwap::from_pointee(HashMap::new()),
                create: Mutex::new(()),
                #[cfg(feature = "tls")]
                tls: self.tls.into_clients(tls::PoolSettings {
                    connect_timeout: self.connect_timeout,
                    idle_timeout: self.pool_idle_timeout,
                    max_idle_per_host: self.pool_max_idle_per_host,
                }),
            }),
        }
    }
}

impl fmt::Debug for DiscoveryClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryClientBuilder")
            .field("balance", &self.balance)
            .field("overrides", &self.overrides)
            .field("health", &self.health)
            .field("hash_header", &self.hash_header)
            .field("resolve_timeout", &self.resolve_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl<B> DiscoveryClient<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The endpoint set of a service this client has resolved, to inspect
    /// health, ejections and load (`None` before the first request to it).
    pub fn endpoints(&self, service: &ServiceName) -> Option<EndpointSet> {
        self.shared
            .targets
            .load()
            .get(service)
            .map(|t| t.set.clone())
    }

    /// Resolves `service` now and waits (up to the resolve timeout) for the
    /// registry's first answer, so the first request does not pay for it.
    /// Returns the endpoint set.
    pub async fn resolve(&self, service: &ServiceName) -> Result<EndpointSet, DiscoveryError> {
        let target = resolve(&self.shared, service).await?;
        Ok(target.set.clone())
    }
}

fn target_for<B>(shared: &Arc<Shared<B>>, service: &ServiceName) -> Arc<Target> {
    if let Some(t) = shared.targets.load().get(service) {
        return t.clone();
    }
    let _guard = shared
        .create
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(t) = shared.targets.load().get(service) {
        return t.clone();
    }
    let config = shared
        .overrides
        .get(service)
        .unwrap_or(&shared.balance)
        .clone();
    let set = EndpointSet::new(service.clone(), config);
    let view = ServiceView::new(&*shared.registry, service.clone());
    let sync = tokio::spawn(follow(view.clone(), set.clone()));
    let health = shared.health.clone().map(|c| c.spawn(set.clone()));
    let target = Arc::new(Target {
        view,
        set,
        classifier: shared.classifier.clone(),
        sync,
        _health: health,
    });
    let mut map = HashMap::clone(&shared.targets.load());
    map.insert(service.clone(), target.clone());
    shared.targets.store(Arc::new(map));
    target
}

/// Keeps the endpoint set equal to the view's last known instances.
async fn follow(view: ServiceView, set: EndpointSet) {
    let mut rx = view.subscribe();
    loop {
        let state = rx.borrow_and_update().clone();
        if state.is_ready() {
            set.update(state.instances().iter().cloned());
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn resolve<B>(
    shared: &Arc<Shared<B>>,
    service: &ServiceName,
) -> Result<Arc<Target>, DiscoveryError> {
    let target = target_for(shared, service);
    if !target.view.is_ready()
        && tokio::time::timeout(shared.resolve_timeout, target.view.ready())
            .await
            .is_err()
    {
        tracing::warn!(%service, timeout = ?shared.resolve_timeout, "no answer from the registry yet");
        return Err(DiscoveryError::NoInstances {
            service: service.clone(),
        });
    }
    // The view can be ready before the task that copies it into the
    // endpoint set has run (the first requests to a service, on a busy
    // runtime): an empty set is filled from the view here.
    if target.set.is_empty() {
        target.set.update(target.view.snapshot().iter().cloned());
    }
    Ok(target)
}

fn service_of<B>(shared: &Shared<B>, uri: &Uri) -> Result<ServiceName, DiscoveryError> {
    let unknown = || DiscoveryError::UnknownService {
        authority: uri.authority().map(|a| a.to_string()).unwrap_or_default(),
    };
    let host = uri.host().ok_or_else(unknown)?;
    let service = ServiceName::new(host).map_err(|_| unknown())?;
    if let Some(allowed) = &shared.allowed
        && !allowed.contains(&service)
    {
        return Err(unknown());
    }
    Ok(service)
}

/// Picks an endpoint and starts the request on it.
fn dispatch<B>(
    shared: &Shared<B>,
    target: Arc<Target>,
    mut req: Request<B>,
) -> Result<ResponseFuture, DiscoveryError>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let key = match req.extensions().get::<HashKey>() {
        Some(k) => Some(k.0.clone()),
        None => shared
            .hash_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .map(|v| Bytes::copy_from_slice(v.as_bytes())),
    };
    let Some(ep) = target.set.pick(key.as_deref()) else {
        return Err(DiscoveryError::NoInstances {
            service: target.set.service().clone(),
        });
    };
    let invalid = |uri: &Uri, reason: &str| DiscoveryError::InvalidRequest {
        uri: uri.to_string(),
        reason: reason.to_owned(),
    };
    if req
        .uri()
        .scheme()
        .is_some_and(|s| s != &Scheme::HTTP && !(uses_tls(shared) && s == &Scheme::HTTPS))
    {
        return Err(invalid(req.uri(), "only http URIs are supported"));
    }
    if !req.headers().contains_key(HOST)
        && let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(HOST, host);
    }
    let authority = Authority::try_from(ep.addr().to_string())
        .map_err(|_| invalid(req.uri(), "instance address is not an authority"))?;
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let new_uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| invalid(req.uri(), &e.to_string()))?;
    *req.uri_mut() = new_uri;
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        let client = tls
            .expected_for(&ep)
            .and_then(|expected| tls.client(expected))
            .map_err(|reason| DiscoveryError::TlsConfig {
                service: target.set.service().clone(),
                reason,
            })?;
        let call = ep.start();
        let fut = client.request(req);
        return Ok(ResponseFuture::sending(fut, call, target));
    }
    let call = ep.start();
    let fut = shared.http.request(req);
    Ok(ResponseFuture::sending(fut, call, target))
}

/// Whether requests go over mTLS.
#[cfg(feature = "tls")]
fn uses_tls<B>(shared: &Shared<B>) -> bool {
    shared.tls.is_some()
}

#[cfg(not(feature = "tls"))]
fn uses_tls<B>(_shared: &Shared<B>) -> bool {
    false
}

impl<B> tower_service::Service<Request<B>> for DiscoveryClient<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = DiscoveryError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pooled client is always ready; an instance is chosen per call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let service = match service_of(&self.shared, req.uri()) {
            Ok(s) => s,
            Err(e) => return ResponseFuture::failed(e),
        };
        let resolved = self
            .shared
            .targets
            .load()
            .get(&service)
            .filter(|t| t.view.is_ready())
            .cloned();
        match resolved {
            Some(target) => match dispatch(&self.shared, target, req) {
                Ok(fut) => fut,
                Err(e) => ResponseFuture::failed(e),
            },
            None => {
                // First request to this service: resolve, then send.
                let shared = self.shared.clone();
                ResponseFuture::resolving(Box::pin(async move {
                    let target = resolve(&shared, &service).await?;
                    dispatch(&shared, target, req)?.await
                }))
            }
        }
    }
}

impl<B> fmt::Debug for DiscoveryClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services: Vec<ServiceName> = self.shared.targets.load().keys().cloned().collect();
        f.debug_struct("DiscoveryClient")
            .field("balance", &self.shared.balance)
            .field("services", &services)
            .finish_non_exhaustive()
    }
}
