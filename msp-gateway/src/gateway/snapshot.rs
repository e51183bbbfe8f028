//! One immutable generation of the gateway: the route table and, per
//! route, its stack. Built whole from a config (reusing what did not
//! change from the previous generation), then swapped in atomically.

use super::error::BuildError;
use super::limit::RouteLimiter;
use super::routes::{Auth, RouteStack, Target};
use crate::bff::{Aggregate, AggregateBuilder};
use crate::config::{GatewayConfig, RegistryConfig, ServiceConfig};
use crate::gateway::Body;
use crate::proxy::{self, ForwardContext, Limits, ProxyClient, TrustedProxies};
use crate::route::RouteTable;
use crate::upstream::stack::{self, Client, RouteUpstream, StackSettings};
use crate::upstream::{Upstream, UpstreamSettings};
use http::uri::PathAndQuery;
use http::{Request, Uri};
use msp_core::{BoxError, Instance, ServiceName};
use msp_discovery::{BalanceConfig, HealthCheck, MemoryRegistry, Registry, StaticRegistry};
use msp_resilience::CircuitBreakerConfig;
use msp_resilience::retry::ReplayBody;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

static REGISTRY_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The registry of a generation, kept across reloads while its config is
/// unchanged.
pub(crate) struct RegistryEntry {
    generation: u64,
    config: RegistryConfig,
    pub(crate) registry: Arc<dyn Registry>,
    /// The memory registry, whose static instances follow the config.
    memory: Option<MemoryRegistry>,
    /// The static instances registered or listed.
    statics: BTreeSet<(String, SocketAddr)>,
    /// The services' DNS names (`registry: dns`).
    dns_names: BTreeMap<String, String>,
}

/// One upstream service of a generation.
pub(crate) struct UpstreamEntry {
    /// The settings it was built with (static instances left out: they
    /// change through the registry).
    key: (ServiceConfig, CircuitBreakerConfig, u64),
    pub(crate) upstream: Upstream,
    pub(crate) client: ProxyClient,
}

/// One generation.
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) table: RouteTable,
    pub(crate) routes: Vec<RouteStack>,
    pub(crate) upstreams: BTreeMap<String, Arc<UpstreamEntry>>,
    pub(crate) registry: Arc<RegistryEntry>,
    pub(crate) trusted: TrustedProxies,
    pub(crate) limits: Limits,
}

fn statics_of(config: &GatewayConfig) -> BTreeSet<(String, SocketAddr)> {
    config
        .services()
        .iter()
        .flat_map(|(name, s)| s.instances.iter().map(move |a| (name.clone(), *a)))
        .collect()
}

fn instance(service: &str, addr: SocketAddr) -> Result<Instance, BuildError> {
    Instance::parse(service, &addr.to_string())
        .map_err(|e| BuildError::invalid(format!("service {service}"), e))
}

fn dns_names_of(config: &GatewayConfig) -> BTreeMap<String, String> {
    config
        .services()
        .iter()
        .filter_map(|(name, s)| Some((name.clone(), s.dns.clone()?)))
        .collect()
}

/// A DNS registry for the services' `dns` names.
#[cfg(feature = "dns")]
fn dns_registry(
    dns: &crate::config::DnsRegistryConfig,
    names: &BTreeMap<String, String>,
) -> Result<msp_discovery::DnsDiscovery, BuildError> {
    use crate::config::DnsName;
    use msp_discovery::DnsTarget;
    let mut registry = match dns.nameserver {
        Some(addr) => msp_discovery::DnsDiscovery::with_nameserver(addr),
        None => msp_discovery::DnsDiscovery::from_system_conf(),
    }
    .map_err(|e| BuildError::Registry(e.to_string()))?
    .refresh_bounds(dns.min_refresh, dns.max_refresh);
    for (service, name) in names {
        let target = match DnsName::parse(name) {
            Ok(DnsName::Srv(name)) => DnsTarget::srv(name),
            Ok(DnsName::Host(name, port)) => DnsTarget::host(name, port),
            Err(e) => return Err(BuildError::invalid(format!("service {service}"), e)),
        };
        let service = ServiceName::new(service)
            .map_err(|e| BuildError::invalid(format!("service {service}"), e))?;
        registry = registry.service(service, target);
    }
    Ok(registry)
}

impl RegistryEntry {
    /// A registry the gateway was given ([`Gateway::with_registry`]):
    /// one generation for the gateway's whole life, so reloads keep every
    /// upstream's state.
    ///
    /// [`Gateway::with_registry`]: super::Gateway::with_registry
    pub(crate) fn external(registry: Arc<dyn Registry>) -> Arc<RegistryEntry> {
        Arc::new(RegistryEntry {
            generation: REGISTRY_GENERATION.fetch_add(1, Ordering::Relaxed),
            config: RegistryConfig::default(),
            registry,
            memory: None,
            statics: BTreeSet::new(),
            dns_names: BTreeMap::new(),
        })
    }
}

/// With an external registry, instances come from it alone: static
/// instances in the config would silently never be routed to.
fn no_statics_with_external(config: &GatewayConfig) -> Result<(), BuildError> {
    match statics_of(config).into_iter().next() {
        Some((service, addr)) => Err(BuildError::invalid(
            format!("service {service}"),
            format!(
                "lists instance {addr}, but the gateway uses an external registry: register instances there"
            ),
        )),
        None => Ok(()),
    }
}

async fn registry_for(
    config: &GatewayConfig,
    previous: Option<&Arc<RegistryEntry>>,
) -> Result<Arc<RegistryEntry>, BuildError> {
    let statics = statics_of(config);
    let dns_names = dns_names_of(config);
    if let Some(prev) = previous
        && prev.config == *config.registry()
    {
        match (&prev.memory, config.registry()) {
            (Some(memory), _) => {
                // Same memory registry: follow the static instances.
                for (service, addr) in prev.statics.difference(&statics) {
                    let id = instance(service, *addr)?.id().clone();
                    memory.expire(&id);
                }
                for (service, addr) in statics.difference(&prev.statics) {
                    memory
                        .insert(instance(service, *addr)?)
                        .map_err(|e| BuildError::Registry(e.to_string()))?;
                }
                return Ok(Arc::new(RegistryEntry {
                    generation: prev.generation,
                    config: prev.config.clone(),
                    registry: prev.registry.clone(),
                    memory: prev.memory.clone(),
                    statics,
                    dns_names,
                }));
            }
            (None, RegistryConfig::Static) if prev.statics != statics => {}
            (None, RegistryConfig::Dns(_)) if prev.dns_names != dns_names => {}
            (None, _) => return Ok(prev.clone()),
        }
    }
    let generation = REGISTRY_GENERATION.fetch_add(1, Ordering::Relaxed);
    let mut memory = None;
    let registry: Arc<dyn Registry> = match config.registry() {
        RegistryConfig::Memory => {
            let registry = MemoryRegistry::new();
            for (service, addr) in &statics {
                registry
                    .insert(instance(service, *addr)?)
                    .map_err(|e| BuildError::Registry(e.to_string()))?;
            }
            memory = Some(registry.clone());
            Arc::new(registry)
        }
        RegistryConfig::Static => {
            let instances = statics
                .iter()
                .map(|(s, a)| instance(s, *a))
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(StaticRegistry::new(instances))
        }
        #[cfg(feature = "etcd")]
        RegistryConfig::Etcd { endpoints, prefix } => {
            let mut registry = msp_discovery::EtcdRegistry::connect(endpoints)
                .await
                .map_err(|e| BuildError::Registry(e.to_string()))?;
            if let Some(prefix) = prefix {
                registry = registry
                    .with_prefix(prefix)
                    .map_err(|e| BuildError::Registry(e.to_string()))?;
            }
            Arc::new(registry)
        }
        #[cfg(not(feature = "etcd"))]
        RegistryConfig::Etcd { .. } => {
            return Err(BuildError::Registry(
                "`registry: etcd` needs msp-gateway built with the `etcd` feature".into(),
            ));
        }
        #[cfg(feature = "dns")]
        RegistryConfig::Dns(dns) => Arc::new(dns_registry(dns, &dns_names)?),
        #[cfg(not(feature = "dns"))]
        RegistryConfig::Dns(_) => {
            return Err(BuildError::Registry(
                "`registry: dns` needs msp-gateway built with the `dns` feature".into(),
            ));
        }
    };
    Ok(Arc::new(RegistryEntry {
        generation,
        config: config.registry().clone(),
        registry,
        memory,
        statics,
        dns_names,
    }))
}

fn health_check(service: &ServiceConfig) -> Option<HealthCheck> {
    let cfg = service.health_check.as_ref()?;
    let check = match &cfg.path {
        Some(path) => HealthCheck::http(path.clone()),
        None => HealthCheck::tcp(),
    };
    Some(
        check
            .interval(cfg.interval)
            .timeout(cfg.timeout)
            .healthy_threshold(cfg.healthy_threshold)
            .unhealthy_threshold(cfg.unhealthy_threshold),
    )
}

fn balance(name: &str, service: &ServiceConfig) -> Result<BalanceConfig, BuildError> {
    let mut builder = BalanceConfig::builder().strategy(service.balancer.clone());
    if let Some(outlier) = &service.outlier {
        builder = builder.outlier_detection(outlier.clone());
    }
    builder
        .build()
        .map_err(|e| BuildError::invalid(format!("service {name}"), e))
}

/// The breaker of each service: the first route to it that configures one
/// decides; routes disagreeing are logged.
fn breakers(config: &GatewayConfig) -> BTreeMap<String, CircuitBreakerConfig> {
    let mut out: BTreeMap<String, CircuitBreakerConfig> = BTreeMap::new();
    for route in config.routes() {
        let Some(breaker) = &route.breaker else {
            continue;
        };
        for service in route_services(route) {
            match out.get(service) {
                Some(existing) if existing != breaker => tracing::warn!(
                    route = route.id(),
                    service,
                    "routes to one service configure different breakers; the service has one breaker, the first route's settings are used"
                ),
                Some(_) => {}
                None => {
                    out.insert(service.to_owned(), breaker.clone());
                }
            }
        }
    }
    out
}

fn route_services(route: &crate::config::RouteConfig) -> impl Iterator<Item = &str> {
    route
        .service
        .as_deref()
        .into_iter()
        .chain(route.split.iter().map(|s| s.service.as_str()))
        .chain(route.mirror.as_ref().map(|m| m.service.as_str()))
}

fn upstream_for(
    name: &str,
    service: &ServiceConfig,
    breaker: CircuitBreakerConfig,
    registry: &RegistryEntry,
    previous: Option<&Snapshot>,
) -> Result<Arc<UpstreamEntry>, BuildError> {
    let mut settings = service.clone();
    settings.instances.clear();
    let key = (settings, breaker.clone(), registry.generation);
    if let Some(prev) = previous.and_then(|p| p.upstreams.get(name))
        && prev.key == key
    {
        return Ok(prev.clone());
    }
    let service_name =
        ServiceName::new(name).map_err(|e| BuildError::invalid(format!("service {name}"), e))?;
    let instances = service
        .instances
        .iter()
        .map(|a| instance(name, *a))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = UpstreamSettings::default()
        .balance(balance(name, service)?)
        .health_check(health_check(service))
        .breaker(breaker)
        .retry(service.retry.clone())
        .instances(instances);
    let upstream = Upstream::new(&*registry.registry, service_name, settings);
    let client = ProxyClient::builder()
        .connect_timeout(service.connect_timeout)
        .pool_idle_timeout(service.pool.idle_timeout)
        .pool_max_idle_per_host(service.pool.max_idle_per_host)
        .h2c(service.h2c)
        .build();
    Ok(Arc::new(UpstreamEntry {
        key,
        upstream,
        client,
    }))
}

/// The innermost service: [`proxy::forward`] with the request's
/// [`ForwardContext`] (a request extension set by the route).
fn forwarding(client: ProxyClient) -> Client {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        let ctx = req
            .extensions()
            .get::<ForwardContext>()
            .cloned()
            .unwrap_or_else(|| ForwardContext::new(SocketAddr::from(([0, 0, 0, 0], 0))));
        let uri = req.uri().clone();
        let fut = proxy::forward(&client, req, uri, &ctx);
        async move {
            let res = fut.await?;
            Ok::<_, BoxError>(res.map(Body::new))
        }
    }))
}

fn route_id_of(agg: &crate::bff::AggregateConfig) -> String {
    format!("aggregate {}", agg.name)
}

/// An aggregate as a route's upstream.
fn aggregate_stack(aggregate: Aggregate) -> RouteUpstream {
    BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .map_err(|never: std::convert::Infallible| -> BoxError { match never {} })
            .service(aggregate),
    )
}

/// The aggregates' one "service client": `http://service-name/path`
/// goes to that service's stack (discovery, balancer, breaker, pooled
/// client); the aggregate itself applies timeouts and the deadline.
fn service_client(
    upstreams: &BTreeMap<String, Arc<UpstreamEntry>>,
) -> BoxCloneSyncService<Request<Body>, http::Response<Body>, BoxError> {
    let stacks: Arc<BTreeMap<String, RouteUpstream>> = Arc::new(
        upstreams
            .iter()
            .map(|(name, entry)| {
                let stack = stack::build(
                    &StackSettings::default(),
                    &entry.upstream,
                    forwarding(entry.client.clone()),
                );
                (name.clone(), stack)
            })
            .collect(),
    );
    BoxCloneSyncService::new(tower::service_fn(move |mut req: Request<Body>| {
        let stacks = stacks.clone();
        async move {
            let service = req.uri().host().unwrap_or_default();
            let Some(stack) = stacks.get(service).cloned() else {
                return Err(BoxError::from(format!(
                    "service {service:?} is not under `services:`"
                )));
            };
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
            stack.oneshot(req).await
        }
    }))
}

fn unknown_service(route: &str, service: &str) -> BuildError {
    BuildError::invalid(
        format!("route {route}"),
        format!("service {service:?} is not under `services:`"),
    )
}

impl Snapshot {
    /// Builds a generation from `config`, reusing the registry, upstreams
    /// and limiters of `previous` whose settings are unchanged.
    pub(crate) async fn build(
        config: GatewayConfig,
        version: u64,
        previous: Option<&Snapshot>,
        external: Option<&Arc<RegistryEntry>>,
    ) -> Result<Snapshot, BuildError> {
        let table = RouteTable::new(&config.with_aggregate_routes())?;
        let registry = match external {
            Some(external) => {
                no_statics_with_external(&config)?;
                external.clone()
            }
            None => registry_for(&config, previous.map(|p| &p.registry)).await?,
        };
        let breakers = breakers(&config);
        let mut upstreams = BTreeMap::new();
        for (name, service) in config.services() {
            let breaker = breakers.get(name).cloned().unwrap_or_default();
            upstreams.insert(
                name.clone(),
                upstream_for(name, service, breaker, &registry, previous)?,
            );
        }
        // Services only the registry knows (etcd): the built-in settings
        // with `service_defaults`.
        let aggregate_services = config.aggregates().iter().flat_map(|a| {
            a.backends
                .iter()
                .filter_map(|b| crate::config::service_of(&b.url))
                .map(move |s| (route_id_of(a), s))
        });
        let route_services = config
            .routes()
            .iter()
            .flat_map(|r| route_services(r).map(move |s| (r.id().to_owned(), s)));
        for (route, service) in route_services.chain(aggregate_services) {
            if !upstreams.contains_key(service) {
                if external.is_none() && !config.registry().discovers_unlisted() {
                    return Err(unknown_service(&route, service));
                }
                let breaker = breakers.get(service).cloned().unwrap_or_default();
                let entry = upstream_for(
                    service,
                    &config.unlisted_service(),
                    breaker,
                    &registry,
                    previous,
                )?;
                upstreams.insert(service.to_owned(), entry);
            }
        }
        let auth = Auth::providers(config.auth())?;
        let mut routes = Vec::with_capacity(config.routes().len());
        for route in config.routes() {
            let settings = StackSettings {
                timeout: route.timeout,
                retry: route.retry.clone(),
                bulkhead: route.bulkhead.clone(),
            };
            let target = |service: &str, weight: u32| -> Result<Target, BuildError> {
                let entry = upstreams
                    .get(service)
                    .ok_or_else(|| unknown_service(route.id(), service))?;
                let stack =
                    stack::build(&settings, &entry.upstream, forwarding(entry.client.clone()));
                Ok(Target::new(service, weight, stack))
            };
            let mut targets = Vec::new();
            if let Some(service) = &route.service {
                targets.push(target(service, 1)?);
            }
            for split in &route.split {
                targets.push(target(&split.service, split.weight)?);
            }
            let mirror = match &route.mirror {
                Some(m) => Some((target(&m.service, 1)?, m.percent)),
                None => None,
            };
            // Keep the limiter (and its counts) when the quota and key are
            // unchanged.
            let limiter = match route.rate_limit {
                None => None,
                Some(quota) => {
                    let kept = previous.and_then(|p| {
                        p.routes
                            .iter()
                            .zip(p.config.routes())
                            .find(|(_, old)| {
                                old.id() == route.id()
                                    && old.rate_limit == route.rate_limit
                                    && old.rate_limit_by == route.rate_limit_by
                                    && p.config.rate_limit_store() == config.rate_limit_store()
                            })
                            .and_then(|(stack, _)| stack.limiter.clone())
                    });
                    match kept {
                        Some(l) => Some(l),
                        None => Some(RouteLimiter::new(
                            quota,
                            &route.rate_limit_by,
                            config.rate_limit_store(),
                            route.id(),
                        )?),
                    }
                }
            };
            let route_auth = auth.for_route(route)?;
            routes.push(RouteStack::new(route, limiter, route_auth, targets, mirror));
        }
        // Aggregates: routes after the configured ones (the table was
        // built the same way), authenticated like routes, served by the
        // BFF over each service's discovery + resilience stack.
        if !config.aggregates().is_empty() {
            let client = service_client(&upstreams);
            for agg in config.aggregates() {
                let aggregate =
                    AggregateBuilder::from_config(crate::config::aggregate_without_auth(agg))
                        .client(client.clone())
                        .build()
                        .map_err(|e| BuildError::invalid(route_id_of(agg), e))?;
                let route = crate::config::aggregate_route(agg);
                let target = Target::new(&agg.name, 1, aggregate_stack(aggregate));
                let access = auth.for_route(&route)?;
                routes.push(RouteStack::new(&route, None, access, vec![target], None));
            }
        }
        let limits = config.limits();
        let limits = Limits::default()
            .with_max_body_bytes(limits.max_body_bytes)
            .with_max_header_bytes(limits.max_header_bytes)
            .with_max_uri_len(limits.max_uri_len);
        let trusted = TrustedProxies::new(config.trusted_proxies().iter().copied());
        Ok(Snapshot {
            version,
            config: Arc::new(config),
            table,
            routes,
            upstreams,
            registry,
            trusted,
            limits,
        })
    }

    /// Waits (up to `timeout`) for every upstream's first registry answer.
    pub(crate) async fn ready(&self, timeout: std::time::Duration) {
        let all = async {
            for entry in self.upstreams.values() {
                entry.upstream.ready().await;
            }
        };
        let _ = tokio::time::timeout(timeout, all).await;
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("routes", &self.routes.len())
            .field("upstreams", &self.upstreams.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
