//! [`DnsDiscovery`]: instances from DNS SRV or A/AAAA records (feature
//! `dns`), as published for Kubernetes headless services.
//!
//! Each service maps to a [`DnsTarget`]:
//!
//! - [`DnsTarget::Srv`]: an SRV name such as
//!   `_http._tcp.orders.shop.svc.cluster.local`; every SRV record's target is
//!   resolved to its A/AAAA addresses (using the additional section when the
//!   server sent one) and becomes one instance per address, with the SRV
//!   port and weight (at least 1). Only the lowest-priority group is used
//!   (RFC 2782: higher priorities are backups).
//! - [`DnsTarget::Host`]: a host name resolved to A/AAAA records, with a
//!   configured port.
//!
//! Instance ids are the socket addresses (`10.1.2.3:8080`).
//!
//! A watch resolves again when the answer's TTL runs out, bounded by
//! [`refresh_bounds`](DnsDiscovery::refresh_bounds) (default 1 s to 30 s).
//! **A failed lookup (timeout, `SERVFAIL`, refused, unreachable server)
//! never replaces the previous answer**: the watch yields
//! [`Stale`](crate::registry::WatchEvent::Stale), keeps retrying with backoff, and
//! sends a fresh [`Snapshot`](crate::registry::WatchEvent::Snapshot) once a lookup
//! succeeds — the bug of clearing endpoints on a failed lookup
//! (cortex#7698) cannot happen. An authoritative "no such name" (`NXDOMAIN`)
//! or an empty answer is an answer, and means no instances.
//!
//! DNS is read-only: [`register`](crate::registry::Registry::register) and
//! [`deregister`](crate::registry::Registry::deregister) fail with
//! [`RegistryError::Unsupported`].
//!
//! # Example
//!
//! ```no_run
//! use msp_core::ServiceName;
//! use msp_discovery::registry::{DnsDiscovery, DnsTarget, ServiceView};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let orders = ServiceName::new("orders")?;
//! let dns = DnsDiscovery::from_system_conf()?
//!     .service(orders.clone(), DnsTarget::srv("_http._tcp.orders.shop.svc.cluster.local"));
//! let view = ServiceView::new(&dns, orders);
//! view.ready().await;
//! println!("{:?}", view.snapshot());
//! # Ok(())
//! # }
//! ```

use crate::registry::{BoxFuture, Registration, Registry, RegistryError, WatchEvent, WatchStream};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use msp_core::backoff::{Backoff, BackoffIter};
use msp_core::{Instance, InstanceId, ServiceName};
use rand::rngs::SmallRng;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const BACKEND: &str = "dns";

/// Where the instances of one service are published in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsTarget {
    /// An SRV name; targets are resolved to addresses.
    Srv(String),
    /// A host name resolved to A/AAAA records, all on `port`.
    Host {
        /// The host name.
        name: String,
        /// The port of every instance.
        port: u16,
    },
}

impl DnsTarget {
    /// An SRV name, e.g. `_http._tcp.orders.shop.svc.cluster.local`.
    pub fn srv(name: impl Into<String>) -> Self {
        DnsTarget::Srv(name.into())
    }

    /// A host name and the port its instances listen on.
    pub fn host(name: impl Into<String>, port: u16) -> Self {
        DnsTarget::Host {
            name: name.into(),
            port,
        }
    }
}

/// Service discovery through DNS. Cheap to clone.
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct DnsDiscovery {
    resolver: TokioResolver,
    targets: Arc<BTreeMap<ServiceName, DnsTarget>>,
    min_refresh: Duration,
    max_refresh: Duration,
    retry: Backoff,
}

impl fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("targets", &self.targets)
            .field("min_refresh", &self.min_refresh)
            .field("max_refresh", &self.max_refresh)
            .finish_non_exhaustive()
    }
}

/// Options for resolvers this module builds: no cache (each refresh asks
/// the server; the refresh schedule already follows the TTLs), a bounded
/// per-query timeout.
fn resolver_opts() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    opts
}

impl DnsDiscovery {
    /// Uses a resolver you configured.
    pub fn new(resolver: TokioResolver) -> Self {
        DnsDiscovery {
            resolver,
            targets: Arc::new(BTreeMap::new()),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(30),
            retry: Backoff::builder()
                .initial(Duration::from_millis(200))
                .max_delay(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Resolves through the system's configuration (`/etc/resolv.conf`),
    /// as a pod in Kubernetes does.
    pub fn from_system_conf() -> Result<Self, RegistryError> {
        let mut builder = Resolver::builder_tokio().map_err(|e| {
            RegistryError::Config(format!("reading the system DNS configuration: {e}"))
        })?;
        let mut opts = builder.options_mut().clone();
        opts.cache_size = 0;
        *builder.options_mut() = opts;
        let resolver = builder
            .build()
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        Ok(Self::new(resolver))
    }

    /// Resolves through the name server at `addr` (UDP, falling back to
    /// TCP), e.g. the cluster DNS service or a test server.
    pub fn with_nameserver(addr: SocketAddr) -> Result<Self, RegistryError> {
        let mut server = NameServerConfig::udp_and_tcp(addr.ip());
        for connection in &mut server.connections {
            connection.port = addr.port();
        }
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(resolver_opts())
            .build()
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        Ok(Self::new(resolver))
    }

    /// Publishes `service` at `target`.
    #[must_use]
    pub fn service(mut self, service: ServiceName, target: DnsTarget) -> Self {
        Arc::make_mut(&mut self.targets).insert(service, target);
        self
    }

    /// Bounds the interval between lookups of a watch: the answer's TTL,
    /// but at least `min` (protects the server from TTL 0) and at most
    /// `max` (notices changes behind long TTLs). `min` is raised to at
    /// least 10 ms; `max` is raised to `min` if smaller.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min.max(Duration::from_millis(10));
        self.max_refresh = max.max(self.min_refresh);
        self
    }

    /// The backoff between retries of a failed lookup in a watch (limits
    /// are ignored). Default: 200 ms doubling to 10 s, full jitter.
    #[must_use]
    pub fn with_retry(mut self, backoff: Backoff) -> Self {
        self.retry = backoff;
        self
    }

    /// How long a watch waits before the next lookup after an answer with
    /// `ttl`.
    ///
    /// ```
    /// # use msp_discovery::registry::DnsDiscovery;
    /// # use std::time::Duration;
    /// # let dns = DnsDiscovery::with_nameserver("127.0.0.1:53".parse()?)?;
    /// let dns = dns.refresh_bounds(Duration::from_secs(1), Duration::from_secs(30));
    /// assert_eq!(dns.refresh_interval(Duration::ZERO), Duration::from_secs(1));
    /// assert_eq!(dns.refresh_interval(Duration::from_secs(5)), Duration::from_secs(5));
    /// assert_eq!(dns.refresh_interval(Duration::from_secs(3600)), Duration::from_secs(30));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh_interval(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_refresh, self.max_refresh)
    }

    fn target(&self, service: &ServiceName) -> Result<&DnsTarget, RegistryError> {
        self.targets.get(service).ok_or_else(|| {
            RegistryError::Config(format!("no DNS name is configured for service {service}"))
        })
    }

    /// One lookup: the instances and the smallest TTL of the records used.
    async fn resolve(
        &self,
        service: &ServiceName,
    ) -> Result<(Vec<Instance>, Duration), RegistryError> {
        match self.target(service)?.clone() {
            DnsTarget::Host { name, port } => {
                let (ips, ttl) = self.resolve_host(&name).await?;
                let instances = ips
                    .into_iter()
                    .map(|ip| make_instance(service, SocketAddr::new(ip, port), 1, None))
                    .collect::<Result<_, _>>()?;
                Ok((instances, ttl))
            }
            DnsTarget::Srv(name) => self.resolve_srv(service, &name).await,
        }
    }

    async fn resolve_host(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), RegistryError> {
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => {
                let ttl = lookup
                    .as_lookup()
                    .answers()
                    .iter()
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(0);
                Ok((lookup.iter().collect(), Duration::from_secs(u64::from(ttl))))
            }
            Err(e) if e.is_no_records_found() => Ok((Vec::new(), negative_ttl(&e))),
            Err(e) => Err(RegistryError::unavailable(BACKEND, e)),
        }
    }

    async fn resolve_srv(
        &self,
        service: &ServiceName,
        name: &str,
    ) -> Result<(Vec<Instance>, Duration), RegistryError> {
        let lookup = match self.resolver.srv_lookup(name).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() => return Ok((Vec::new(), negative_ttl(&e))),
            Err(e) => return Err(RegistryError::unavailable(BACKEND, e)),
        };
        let srvs: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some((srv.clone(), r.ttl)),
                _ => None,
            })
            .collect();
        let Some(best) = srvs.iter().map(|(s, _)| s.priority).min() else {
            return Ok((Vec::new(), Duration::from_secs(u64::from(min_ttl(&lookup)))));
        };
        let mut ttl = u32::MAX;
        let mut instances = Vec::new();
        for (srv, srv_ttl) in srvs.into_iter().filter(|(s, _)| s.priority == best) {
            ttl = ttl.min(srv_ttl);
            // Addresses the server sent along (Kubernetes does), else ask.
            let glue: Vec<(IpAddr, u32)> = lookup
                .additionals()
                .iter()
                .filter(|r| r.name == srv.target)
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
                    RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl)),
                    _ => None,
                })
                .collect();
            let ips = if glue.is_empty() {
                let (ips, ip_ttl) = self.resolve_host(&srv.target.to_string()).await?;
                ttl = ttl.min(u32::try_from(ip_ttl.as_secs()).unwrap_or(u32::MAX));
                ips
            } else {
                ttl = glue.iter().map(|(_, t)| *t).fold(ttl, u32::min);
                glue.into_iter().map(|(ip, _)| ip).collect()
            };
            for ip in ips {
                let target = srv.target.to_string();
                instances.push(make_instance(
                    service,
                    SocketAddr::new(ip, srv.port),
                    u32::from(srv.weight).max(1),
                    Some(target),
                )?);
            }
        }
        Ok((instances, Duration::from_secs(u64::from(ttl))))
    }
}

fn min_ttl(lookup: &hickory_resolver::lookup::Lookup) -> u32 {
    lookup.answers().iter().map(|r| r.ttl).min().unwrap_or(0)
}

fn negative_ttl(e: &hickory_resolver::net::NetError) -> Duration {
    match e {
        hickory_resolver::net::NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(
            no_records,
        )) => Duration::from_secs(u64::from(no_records.negative_ttl.unwrap_or(0))),
        _ => Duration::ZERO,
    }
}

fn make_instance(
    service: &ServiceName,
    addr: SocketAddr,
    weight: u32,
    target: Option<String>,
) -> Result<Instance, RegistryError> {
    let invalid = |e: msp_core::instance::InvalidInstance| RegistryError::InvalidEntry {
        key: addr.to_string(),
        source: e.into(),
    };
    let mut builder = Instance::builder(service.clone(), addr)
        .id(InstanceId::new(addr.to_string()).map_err(invalid)?)
        .weight(weight);
    if let Some(target) = target {
        builder = builder.metadata("dns.target", target);
    }
    builder.build().map_err(invalid)
}

impl Registry for DnsDiscovery {
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
        Box::pin(async move { self.resolve(service).await.map(|(list, _)| list) })
    }

    fn watch(&self, service: &ServiceName) -> WatchStream {
        let watch = DnsWatch {
            dns: self.clone(),
            service: service.clone(),
            last: None,
            stale: false,
            next_at: None,
            pending: VecDeque::new(),
            delays: self.retry.iter(),
        };
        Box::pin(futures_util::stream::unfold(watch, |mut w| async move {
            let event = w.next_event().await;
            Some((event, w))
        }))
    }
}

struct DnsWatch {
    dns: DnsDiscovery,
    service: ServiceName,
    /// The last answer delivered; never replaced by a failure.
    last: Option<BTreeMap<InstanceId, Instance>>,
    stale: bool,
    next_at: Option<Instant>,
    pending: VecDeque<WatchEvent>,
    delays: BackoffIter<SmallRng>,
}

impl DnsWatch {
    async fn next_event(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            if let Some(at) = self.next_at.take() {
                tokio::time::sleep_until(at).await;
            }
            match self.dns.resolve(&self.service).await {
                Ok((instances, ttl)) => {
                    self.delays.reset();
                    self.next_at = Some(Instant::now() + self.dns.refresh_interval(ttl));
                    let current: BTreeMap<_, _> =
                        instances.into_iter().map(|i| (i.id().clone(), i)).collect();
                    let previous = self.last.replace(current.clone());
                    match previous {
                        Some(previous) if !self.stale => {
                            for id in previous.keys().filter(|id| !current.contains_key(*id)) {
                                self.pending.push_back(WatchEvent::Removed(id.clone()));
                            }
                            for (id, instance) in &current {
                                if previous.get(id) != Some(instance) {
                                    self.pending.push_back(WatchEvent::Added(instance.clone()));
                                }
                            }
                        }
                        _ => {
                            if self.stale {
                                tracing::info!(service = %self.service, "DNS lookups succeed again");
                            }
                            self.stale = false;
                            return WatchEvent::Snapshot(current.into_values().collect());
                        }
                    }
                }
                Err(error) => {
                    let delay = self.delays.next().unwrap_or_else(|| {
                        self.delays.reset();
                        self.dns.retry.max_delay()
                    });
                    self.next_at = Some(Instant::now() + delay);
                    tracing::debug!(service = %self.service, %error, ?delay, "DNS lookup failed; keeping the previous answer");
                    if !self.stale {
                        self.stale = true;
                        return WatchEvent::Stale(error);
                    }
                }
            }
        }
    }
}
