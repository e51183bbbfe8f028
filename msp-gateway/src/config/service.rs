//! Upstream services, the registry, the listener limits.

use msp_discovery::{OutlierConfig, Strategy};
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
/// | `connect_timeout` | `1s` | TCP connect timeout |
/// | `pool` | see [`PoolConfig`] | idle connection pool |
/// | `h2c` | `false` | talk HTTP/2 without TLS (gRPC upstreams) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
#[must_use]
pub struct ServiceConfig {
    /// Static instances.
    pub instances: Vec<SocketAddr>,
    /// How an instance is chosen.
    pub balancer: Strategy,
    /// Active health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier ejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierConfig>,
    /// TCP connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The idle connection pool.
    pub pool: PoolConfig,
    /// Use HTTP/2 without TLS.
    pub h2c: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            instances: Vec::new(),
            balancer: Strategy::default(),
            health_check: None,
            outlier: None,
            connect_timeout: Duration::from_secs(1),
            pool: PoolConfig::default(),
            h2c: false,
        }
    }
}

impl ServiceConfig {
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
        self
    }

    /// Sets active health checks.
    pub fn health_check(mut self, check: HealthCheckConfig) -> Self {
        self.health_check = Some(check);
        self
    }

    /// Sets passive outlier ejection.
    pub fn outlier(mut self, outlier: OutlierConfig) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the pool.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Talks HTTP/2 without TLS.
    pub fn h2c(mut self, yes: bool) -> Self {
        self.h2c = yes;
        self
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
/// `static`, `dns`, or `{etcd: {endpoints: [...], prefix: /msp}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
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
    /// DNS SRV/A lookups of the service names.
    Dns,
}

impl RegistryConfig {
    /// Whether the registry can find services not listed under `services`.
    pub fn discovers_unlisted(&self) -> bool {
        matches!(self, RegistryConfig::Etcd { .. } | RegistryConfig::Dns)
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
