//! Upstream services, the registry, the listener limits.

use msp_discovery::{OutlierConfig, Strategy};
use msp_resilience::retry::RetryConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// One upstream service under `services:`.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `instances` | `[]` | static instances (`10.0.0.1:8080`), registered into the gateway's registry |
/// | `balancer` | `{p2c: {}}` | a [`Strategy`]: `round_robin`, `random`, `weighted`, `{p2c: {decay, default_rtt}}`… |
/// | `health_check` | none | active checks, see [`HealthCheckConfig`] |
/// | `outlier` | none | passive outlier ejection, an [`OutlierConfig`] |
/// | `retry` | none | retries of every route to the service, a [`RetryConfig`] (`max_attempts`, `backoff`, `budget`, `per_try_timeout`…); a route's own `retry` replaces it. See below |
/// | `connect_timeout` | `1s` | TCP connect timeout |
/// | `pool` | see [`PoolConfig`] | idle connection pool |
/// | `h2c` | `false` | talk HTTP/2 without TLS (gRPC upstreams) |
/// | `dns` | none | with `registry: dns`, where the instances are published: an SRV name (`_http._tcp.orders.shop.svc.cluster.local`) or `host:port` (A/AAAA records, one port) |
///
/// # Retries
///
/// With `retry`, a failed attempt (a connection error, a reset, a `5xx`)
/// is sent again and the balancer picks the instance again, so a retry
/// usually lands on another instance (a failed call never lowers an
/// instance's latency estimate, and outlier ejection takes a dead one
/// out). What is retried follows Envoy's `retry_on: connect-failure,reset,5xx`
/// and linkerd:
///
/// - idempotent methods (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`,
///   `TRACE`) and requests with an `Idempotency-Key`, on any failure;
/// - any other method (`POST`, `PATCH`) only when no connection could be
///   made (refused, unreachable, connect timeout): the request provably
///   never left, so sending it elsewhere cannot apply it twice; with
///   `retry_non_idempotent: true`, on any failure;
/// - request bodies are replayed from a buffer of at most
///   `max_replay_body` bytes (64 KiB); a larger body is sent once;
/// - one [retry budget](msp_resilience::retry::RetryBudget) per service,
///   shared by every route to it (by default 20 % of the last 10 s of
///   requests plus 10 retries a second): when every instance fails, the
///   budget, not `max_attempts × requests`, bounds the extra load;
/// - an open breaker, a full bulkhead or a rate limit is never retried.
///
/// ```
/// use msp_gateway::config::GatewayConfig;
///
/// let config = GatewayConfig::from_yaml(r#"
/// routes:
///   - { path: "/api/products/*", service: product-service }
/// services:
///   product-service:
///     instances: ["127.0.0.1:9001", "127.0.0.1:9002"]
///     outlier: { consecutive_failures: 2, base_ejection_time: 30s }
///     retry: { max_attempts: 3, backoff: { initial: 10ms, max_delay: 100ms } }
/// "#, "gateway.yaml")?;
/// let retry = config.services()["product-service"].retry.as_ref().expect("retry");
/// assert_eq!(retry.max_attempts(), 3);
///
/// // Invalid settings name the service, the field and the line.
/// let err = GatewayConfig::from_yaml(
///     "services:\n  s:\n    retry: { max_attempts: 0 }\n", "gw.yaml").unwrap_err();
/// assert!(err.to_string().starts_with("gw.yaml:3"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ServiceRepr", into = "ServiceRepr")]
#[non_exhaustive]
#[must_use]
pub struct ServiceConfig {
    /// Static instances.
    pub instances: Vec<SocketAddr>,
    /// How an instance is chosen.
    pub balancer: Strategy,
    /// Active health checks.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier ejection.
    pub outlier: Option<OutlierConfig>,
    /// Retries of every route to the service (a route's own `retry`
    /// replaces it); see [Retries](Self#retries).
    pub retry: Option<RetryConfig>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// The idle connection pool.
    pub pool: PoolConfig,
    /// Use HTTP/2 without TLS.
    pub h2c: bool,
    /// Where the instances are published in DNS (`registry: dns`): an
    /// SRV name starting with `_`, or `host:port`.
    pub dns: Option<String>,
    /// The fields the YAML or a builder method set (so a service's own
    /// `connect_timeout: 1s` wins over `service_defaults`, even though it
    /// equals the built-in default).
    set: Fields,
}

/// Which of a service's [defaultable](ServiceDefaults) fields were set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fields(u8);

impl Fields {
    const BALANCER: u8 = 1;
    const HEALTH_CHECK: u8 = 1 << 1;
    const OUTLIER: u8 = 1 << 2;
    const RETRY: u8 = 1 << 3;
    const CONNECT_TIMEOUT: u8 = 1 << 4;
    const POOL: u8 = 1 << 5;
    const H2C: u8 = 1 << 6;

    fn with(self, bit: u8, on: bool) -> Fields {
        if on { Fields(self.0 | bit) } else { self }
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Equal when every setting is equal (which fields were written out does
/// not matter: [`GatewayConfig::services`](super::GatewayConfig::services)
/// compares the effective settings).
impl PartialEq for ServiceConfig {
    fn eq(&self, o: &Self) -> bool {
        self.instances == o.instances
            && self.balancer == o.balancer
            && self.health_check == o.health_check
            && self.outlier == o.outlier
            && self.retry == o.retry
            && self.connect_timeout == o.connect_timeout
            && self.pool == o.pool
            && self.h2c == o.h2c
            && self.dns == o.dns
    }
}

/// The YAML form of [`ServiceConfig`]: every field optional, so that an
/// absent one can come from `service_defaults`.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ServiceRepr {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    instances: Vec<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balancer: Option<Strategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheckConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outlier: Option<OutlierConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<RetryConfig>,
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<PoolConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    h2c: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<String>,
}

impl From<ServiceRepr> for ServiceConfig {
    fn from(r: ServiceRepr) -> Self {
        let d = ServiceConfig::default();
        let set = Fields::default()
            .with(Fields::BALANCER, r.balancer.is_some())
            .with(Fields::HEALTH_CHECK, r.health_check.is_some())
            .with(Fields::OUTLIER, r.outlier.is_some())
            .with(Fields::RETRY, r.retry.is_some())
            .with(Fields::CONNECT_TIMEOUT, r.connect_timeout.is_some())
            .with(Fields::POOL, r.pool.is_some())
            .with(Fields::H2C, r.h2c.is_some());
        ServiceConfig {
            instances: r.instances,
            balancer: r.balancer.unwrap_or(d.balancer),
            health_check: r.health_check,
            outlier: r.outlier,
            retry: r.retry,
            connect_timeout: r.connect_timeout.unwrap_or(d.connect_timeout),
            pool: r.pool.unwrap_or(d.pool),
            h2c: r.h2c.unwrap_or(d.h2c),
            dns: r.dns,
            set,
        }
    }
}

/// Writes out the fields the service sets itself (or that differ from the
/// built-in defaults), so a written config reads back with the same
/// inheritance from `service_defaults`.
impl From<ServiceConfig> for ServiceRepr {
    fn from(s: ServiceConfig) -> Self {
        let own = |bit| s.is_set(bit);
        ServiceRepr {
            balancer: own(Fields::BALANCER).then(|| s.balancer.clone()),
            health_check: s.health_check.clone(),
            outlier: s.outlier.clone(),
            retry: s.retry.clone(),
            connect_timeout: own(Fields::CONNECT_TIMEOUT).then_some(s.connect_timeout),
            pool: own(Fields::POOL).then_some(s.pool),
            h2c: own(Fields::H2C).then_some(s.h2c),
            instances: s.instances,
            dns: s.dns,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            instances: Vec::new(),
            balancer: Strategy::default(),
            health_check: None,
            outlier: None,
            retry: None,
            connect_timeout: Duration::from_secs(1),
            pool: PoolConfig::default(),
            h2c: false,
            dns: None,
            set: Fields::default(),
        }
    }
}

impl ServiceConfig {
    /// Whether the service sets this field itself: written in the YAML, set
    /// by a builder method, or (for a field assigned directly) different
    /// from the built-in default.
    fn is_set(&self, bit: u8) -> bool {
        if self.set.has(bit) {
            return true;
        }
        let d = ServiceConfig::default();
        match bit {
            Fields::BALANCER => self.balancer != d.balancer,
            Fields::HEALTH_CHECK => self.health_check.is_some(),
            Fields::OUTLIER => self.outlier.is_some(),
            Fields::RETRY => self.retry.is_some(),
            Fields::CONNECT_TIMEOUT => self.connect_timeout != d.connect_timeout,
            Fields::POOL => self.pool != d.pool,
            _ => self.h2c != d.h2c,
        }
    }

    /// Whether the service sets its own `retry`.
    pub(crate) fn own_retry(&self) -> bool {
        self.is_set(Fields::RETRY)
    }

    /// Whether the service sets its own `connect_timeout`.
    pub(crate) fn own_connect_timeout(&self) -> bool {
        self.is_set(Fields::CONNECT_TIMEOUT)
    }

    /// Whether the service sets its own `health_check`.
    pub(crate) fn own_health_check(&self) -> bool {
        self.is_set(Fields::HEALTH_CHECK)
    }

    /// These settings with every field the service does not set taken from
    /// `defaults` (whole fields: a service's own `retry` replaces the
    /// default `retry`, nothing of the two is merged).
    pub fn with_defaults(&self, defaults: &ServiceDefaults) -> ServiceConfig {
        let mut out = self.clone();
        let inherit = |bit| !self.is_set(bit);
        if let Some(v) = defaults
            .balancer
            .as_ref()
            .filter(|_| inherit(Fields::BALANCER))
        {
            out.balancer = v.clone();
        }
        if let Some(v) = defaults
            .health_check
            .as_ref()
            .filter(|_| inherit(Fields::HEALTH_CHECK))
        {
            out.health_check = Some(v.clone());
        }
        if let Some(v) = defaults
            .outlier
            .as_ref()
            .filter(|_| inherit(Fields::OUTLIER))
        {
            out.outlier = Some(v.clone());
        }
        if let Some(v) = defaults.retry.as_ref().filter(|_| inherit(Fields::RETRY)) {
            out.retry = Some(v.clone());
        }
        if let Some(v) = defaults
            .connect_timeout
            .filter(|_| inherit(Fields::CONNECT_TIMEOUT))
        {
            out.connect_timeout = v;
        }
        if let Some(v) = defaults.pool.filter(|_| inherit(Fields::POOL)) {
            out.pool = v;
        }
        if let Some(v) = defaults.h2c.filter(|_| inherit(Fields::H2C)) {
            out.h2c = v;
        }
        out
    }

    /// A service with these static instances and the defaults.
    pub fn new(instances: impl IntoIterator<Item = SocketAddr>) -> Self {
        ServiceConfig {
            instances: instances.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Sets the balancer.
    pub fn balancer(mut self, strategy: Strategy) -> Self {
        self.balancer = strategy;
        self.set = self.set.with(Fields::BALANCER, true);
        self
    }

    /// Sets active health checks.
    pub fn health_check(mut self, check: HealthCheckConfig) -> Self {
        self.health_check = Some(check);
        self.set = self.set.with(Fields::HEALTH_CHECK, true);
        self
    }

    /// Sets passive outlier ejection.
    pub fn outlier(mut self, outlier: OutlierConfig) -> Self {
        self.outlier = Some(outlier);
        self.set = self.set.with(Fields::OUTLIER, true);
        self
    }

    /// Retries every route to the service with `retry` (see
    /// [Retries](Self#retries)).
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self.set = self.set.with(Fields::RETRY, true);
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.set = self.set.with(Fields::CONNECT_TIMEOUT, true);
        self
    }

    /// Sets the pool.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self.set = self.set.with(Fields::POOL, true);
        self
    }

    /// Talks HTTP/2 without TLS.
    pub fn h2c(mut self, yes: bool) -> Self {
        self.h2c = yes;
        self.set = self.set.with(Fields::H2C, true);
        self
    }

    /// Where the instances are published in DNS (`registry: dns`): an SRV
    /// name (`_http._tcp.orders.shop.svc.cluster.local`) or `host:port`.
    pub fn dns(mut self, name: impl Into<String>) -> Self {
        self.dns = Some(name.into());
        self
    }
}

/// `service_defaults:`: settings every service gets unless it sets the
/// field itself, so twenty services need not repeat one `retry` block.
///
/// The fields are a service's own ([`ServiceConfig`]) except `instances`
/// and `dns`, which name one service's instances: `balancer`,
/// `health_check`, `outlier`, `retry`, `connect_timeout`, `pool`, `h2c`.
/// Precedence is **per top-level field, whole field**: a service writing
/// `retry: {max_attempts: 5}` gets exactly that retry (its `backoff`,
/// `budget`… are the built-in ones, not the default's); a service not
/// writing `retry` gets the default's `retry` whole. Services only the
/// registry knows (`registry: {etcd: …}`, no `services:` entry) get the
/// defaults as they are. [`GatewayConfig::services`](super::GatewayConfig::services)
/// returns the effective settings; a reload with other defaults rebuilds
/// the services whose effective settings changed.
///
/// The shape follows Spring Cloud Gateway's `default-filters` and Envoy's
/// per-cluster settings repeated from one template: one top-level block,
/// overridden field by field.
///
/// ```
/// use msp_gateway::config::GatewayConfig;
/// use std::time::Duration;
///
/// let config = GatewayConfig::from_yaml(r#"
/// service_defaults:
///   connect_timeout: 250ms
///   retry: { max_attempts: 3, backoff: { initial: 10ms, max_delay: 100ms } }
///   outlier: { consecutive_failures: 2 }
/// services:
///   orders: { instances: ["127.0.0.1:9001"] }
///   payments:
///     instances: ["127.0.0.1:9002"]
///     retry: { max_attempts: 1 }
/// "#, "gateway.yaml")?;
/// let orders = &config.services()["orders"];
/// assert_eq!(orders.retry.as_ref().map(|r| r.max_attempts()), Some(3));
/// assert_eq!(orders.connect_timeout, Duration::from_millis(250));
/// let payments = &config.services()["payments"];
/// assert_eq!(payments.retry.as_ref().map(|r| r.max_attempts()), Some(1), "its own retry wins");
/// assert!(payments.outlier.is_some(), "the other fields still come from the defaults");
///
/// // Invalid defaults name `service_defaults` and the line.
/// let err = GatewayConfig::from_yaml(
///     "service_defaults:\n  connect_timeout: 0s\n", "gw.yaml").unwrap_err();
/// assert_eq!(err.to_string(), "gw.yaml:2: `service_defaults.connect_timeout`: must be longer than zero");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
#[must_use]
pub struct ServiceDefaults {
    /// How an instance is chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balancer: Option<Strategy>,
    /// Active health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier ejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierConfig>,
    /// Retries of every route to the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// TCP connect timeout.
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// The idle connection pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolConfig>,
    /// Use HTTP/2 without TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2c: Option<bool>,
}

impl ServiceDefaults {
    /// No defaults: every service has the built-in settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default balancer.
    pub fn balancer(mut self, strategy: Strategy) -> Self {
        self.balancer = Some(strategy);
        self
    }

    /// The default active health checks.
    pub fn health_check(mut self, check: HealthCheckConfig) -> Self {
        self.health_check = Some(check);
        self
    }

    /// The default outlier ejection.
    pub fn outlier(mut self, outlier: OutlierConfig) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// The default retry.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The default connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The default pool.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = Some(pool);
        self
    }

    /// HTTP/2 without TLS by default.
    pub fn h2c(mut self, yes: bool) -> Self {
        self.h2c = Some(yes);
        self
    }
}

/// A service's DNS name, parsed (see [`ServiceConfig::dns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsName {
    /// An SRV name.
    Srv(String),
    /// A host name and the port of every instance.
    Host(String, u16),
}

fn dns_label_chars(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

impl DnsName {
    /// `_srv._tcp.name` or `host:port`.
    pub(crate) fn parse(s: &str) -> Result<DnsName, String> {
        let hint = "an SRV name (`_http._tcp.orders.shop.svc.cluster.local`) or `host:port` (`orders.local:8080`)";
        if let Some((host, port)) = s.rsplit_once(':') {
            return match port.parse::<u16>() {
                Ok(port) if port > 0 && dns_label_chars(host) => {
                    Ok(DnsName::Host(host.to_owned(), port))
                }
                _ => Err(format!("{s:?} is not {hint}")),
            };
        }
        if s.starts_with('_') && dns_label_chars(s) {
            Ok(DnsName::Srv(s.to_owned()))
        } else {
            Err(format!("{s:?} is not {hint}"))
        }
    }
}

/// Active health checks of a service's instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HealthCheckConfig {
    /// `GET` this path, healthy on `2xx`; none: a TCP connect check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between checks (default 10 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Timeout of one check (default 1 s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Passing checks in a row that make an instance healthy (default 2).
    pub healthy_threshold: u32,
    /// Failing checks in a row that make an instance unhealthy (default 2).
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

impl HealthCheckConfig {
    /// HTTP checks of `path` with the default schedule.
    pub fn http(path: impl Into<String>) -> Self {
        HealthCheckConfig {
            path: Some(path.into()),
            ..Self::default()
        }
    }
}

/// The idle connection pool of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// How long an idle connection is kept (default 90 s).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Idle connections kept per instance (default 32).
    pub max_idle_per_host: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 32,
        }
    }
}

/// Where upstream instances come from. YAML: `memory` (the default),
/// `static`, `dns` or `{dns: {nameserver: 10.96.0.10:53}}` (feature `dns`;
/// each service names its records with `dns:`), or
/// `{etcd: {endpoints: [...], prefix: /msp}}` (feature `etcd`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryConfig {
    /// An in-memory registry holding the services' static instances (and
    /// anything registered into it at run time).
    #[default]
    Memory,
    /// Exactly the services' static instances.
    Static,
    /// An etcd registry (the `etcd` feature).
    Etcd {
        /// etcd endpoints (`http://127.0.0.1:2379`).
        endpoints: Vec<String>,
        /// Key prefix (default msp-discovery's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
    /// DNS SRV or A/AAAA lookups of each service's `dns` name (the `dns`
    /// feature).
    Dns(DnsRegistryConfig),
}

/// `registry: {dns: …}`: which name server, how often to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DnsRegistryConfig {
    /// The name server (`10.96.0.10:53`); none: the system's
    /// (`/etc/resolv.conf`), as in a Kubernetes pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<SocketAddr>,
    /// Looks again when an answer's TTL runs out, but not sooner than this
    /// (default 1 s).
    #[serde(with = "humantime_serde")]
    pub min_refresh: Duration,
    /// … and not later than this (default 30 s).
    #[serde(with = "humantime_serde")]
    pub max_refresh: Duration,
}

impl Default for DnsRegistryConfig {
    fn default() -> Self {
        DnsRegistryConfig {
            nameserver: None,
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(30),
        }
    }
}

impl DnsRegistryConfig {
    /// Asks the name server at `addr`.
    #[must_use]
    pub fn nameserver(mut self, addr: SocketAddr) -> Self {
        self.nameserver = Some(addr);
        self
    }

    /// Bounds the time between lookups.
    #[must_use]
    pub fn refresh(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max;
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdRepr {
    endpoints: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
}

const REGISTRIES: &[&str] = &["memory", "static", "dns", "etcd"];

/// `memory` / `static` / `dns` as a word, `{etcd: …}` / `{dns: …}` as a
/// one-key map.
impl<'de> Deserialize<'de> for RegistryConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RegistryConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`memory`, `static`, `dns`, `{dns: {…}}` or `{etcd: {endpoints: […]}}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RegistryConfig, E> {
                match v {
                    "memory" => Ok(RegistryConfig::Memory),
                    "static" => Ok(RegistryConfig::Static),
                    "dns" => Ok(RegistryConfig::Dns(DnsRegistryConfig::default())),
                    "etcd" => Err(E::custom(
                        "`etcd` needs its endpoints: `{etcd: {endpoints: [http://127.0.0.1:2379]}}`",
                    )),
                    other => Err(E::unknown_variant(other, REGISTRIES)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RegistryConfig, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom("an empty registry map"));
                };
                let out = match key.as_str() {
                    "memory" => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        RegistryConfig::Memory
                    }
                    "static" => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        RegistryConfig::Static
                    }
                    "dns" => RegistryConfig::Dns(
                        map.next_value::<Option<DnsRegistryConfig>>()?
                            .unwrap_or_default(),
                    ),
                    "etcd" => {
                        let e: EtcdRepr = map.next_value()?;
                        RegistryConfig::Etcd {
                            endpoints: e.endpoints,
                            prefix: e.prefix,
                        }
                    }
                    other => return Err(A::Error::unknown_variant(other, REGISTRIES)),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("one registry, not several"));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

impl RegistryConfig {
    /// Whether the registry can find services not listed under `services`
    /// (etcd; DNS needs each service's `dns` name, so it does not).
    pub fn discovers_unlisted(&self) -> bool {
        matches!(self, RegistryConfig::Etcd { .. })
    }
}

/// Limits on incoming requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Largest request body in bytes (default 10 MiB); larger is 413.
    pub max_body_bytes: u64,
    /// Largest total size of the request headers in bytes (default 64 KiB); larger is 431.
    pub max_header_bytes: usize,
    /// Longest request target in bytes (default 8 KiB); longer is 414.
    pub max_uri_len: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            max_uri_len: 8 * 1024,
        }
    }
}

impl LimitsConfig {
    /// Sets the largest request body.
    #[must_use]
    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Sets the largest header block.
    #[must_use]
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }

    /// Sets the longest request target.
    #[must_use]
    pub fn max_uri_len(mut self, n: usize) -> Self {
        self.max_uri_len = n;
        self
    }
}

/// The admin listener (off unless configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Its address.
    pub listen: SocketAddr,
}

/// Where per-route and per-client rate-limit counts live. YAML: `local`
/// (the default: in this process) or
/// `{redis: {url: "redis://127.0.0.1:6379", prefix: "shop:gw", on_error: local}}`
/// (feature `redis`): every gateway using the same Redis and prefix shares
/// one count per route and client, so N replicas enforce the quota once,
/// not N times.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum RateLimitStoreConfig {
    /// Counts in this process.
    #[default]
    Local,
    /// Counts in Redis, shared by every gateway with the same prefix.
    Redis(RedisStoreConfig),
}

/// `rate_limit_store: {redis: …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// The Redis URL (`redis://127.0.0.1:6379`).
    pub url: String,
    /// Prefix of the Redis keys (default `msp:gateway`); gateways sharing
    /// limits use the same one. Keys are `{prefix}:{route}:{client}`.
    #[serde(default = "default_store_prefix")]
    pub prefix: String,
    /// When Redis does not answer in time (default `local`).
    #[serde(default)]
    pub on_error: OnStoreError,
    /// How long a check may wait for Redis (default 250 ms).
    #[serde(default = "default_store_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_store_prefix() -> String {
    "msp:gateway".to_owned()
}

fn default_store_timeout() -> Duration {
    Duration::from_millis(250)
}

impl RedisStoreConfig {
    /// Redis at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisStoreConfig {
            url: url.into(),
            prefix: default_store_prefix(),
            on_error: OnStoreError::default(),
            timeout: default_store_timeout(),
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets what happens when Redis does not answer.
    #[must_use]
    pub fn on_error(mut self, on_error: OnStoreError) -> Self {
        self.on_error = on_error;
        self
    }
}

/// What a rate limit does when its store (Redis) does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnStoreError {
    /// Admit the request.
    FailOpen,
    /// Refuse it (429, retry after 1 s).
    FailClosed,
    /// Count in this process until Redis is back (N gateways: up to N × the
    /// quota pass meanwhile).
    #[default]
    Local,
}
