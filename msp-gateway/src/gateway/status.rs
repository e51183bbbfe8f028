//! What the gateway reports about itself: reloads, routes, upstreams
//! (read by the admin listener, usable from code).

use super::Gateway;
use super::error::BuildError;
use msp_discovery::EndpointSet;
use msp_resilience::circuit_breaker::Breaker;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub(crate) struct Reloads {
    accepted: u64,
    rejected: u64,
    last_reload: Option<SystemTime>,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
}

impl Reloads {
    pub(crate) fn accepted(&mut self, _version: u64) {
        self.accepted += 1;
        self.last_reload = Some(SystemTime::now());
    }

    pub(crate) fn rejected(&mut self, error: &BuildError) {
        self.rejected += 1;
        self.last_error = Some(error.to_string());
        self.last_error_at = Some(SystemTime::now());
    }
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    })
}

/// The configuration's version and reload history.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ReloadStatus {
    /// The active version (1 for the first config).
    pub version: u64,
    /// Reloads accepted.
    pub reloads: u64,
    /// Reloads rejected.
    pub rejected: u64,
    /// When the last accepted reload happened (Unix seconds).
    pub last_reload_unix: Option<u64>,
    /// Why the last rejected reload was rejected (kept after later
    /// successes; compare the times).
    pub last_error: Option<String>,
    /// When it was rejected (Unix seconds).
    pub last_error_unix: Option<u64>,
}

/// One route and its limiter.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteStatus {
    /// The route's id (its name, else its path).
    pub id: String,
    /// The path pattern.
    pub path: String,
    /// Allowed methods (empty: all).
    pub methods: Vec<String>,
    /// Upstream services with their weights.
    pub services: Vec<(String, u32)>,
    /// Auth providers (empty: open).
    pub auth: Vec<String>,
    /// The rate limit: quota (`1000/hour`).
    pub rate_limit: Option<String>,
    /// What it counts per (`route`, `ip`, `header`, `consumer`).
    pub rate_limit_by: Option<&'static str>,
    /// Client keys the limiter tracks in this process now (0 with Redis).
    pub rate_limit_keys: usize,
    /// Where the counts live (`local`, `redis`).
    pub rate_limit_store: Option<&'static str>,
}

/// One instance of an upstream service.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct InstanceStatus {
    /// Its id in the registry.
    pub id: String,
    /// Its address.
    pub addr: String,
    /// Passing active health checks (or none configured).
    pub healthy: bool,
    /// Ejected by outlier detection.
    pub ejected: bool,
    /// Requests in flight.
    pub in_flight: u32,
}

/// One upstream service: breaker and instances.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct UpstreamStatus {
    /// The service name.
    pub service: String,
    /// Breaker state: `closed`, `open`, `half_open` (…).
    pub breaker: &'static str,
    /// Failure rate in the breaker's window, percent.
    pub breaker_failure_rate: f64,
    /// The registry is unreachable; the last known instances are served.
    pub stale: bool,
    /// Balancing over every instance because too few are available.
    pub panic: bool,
    /// Retries sent to the service since it was configured (every route).
    pub retries: u64,
    /// The instances.
    pub instances: Vec<InstanceStatus>,
}

impl Gateway {
    /// The configuration's version and reload history.
    pub fn status(&self) -> ReloadStatus {
        let version = self.version();
        let r = self.lock_status();
        ReloadStatus {
            version,
            reloads: r.accepted,
            rejected: r.rejected,
            last_reload_unix: unix(r.last_reload),
            last_error: r.last_error.clone(),
            last_error_unix: unix(r.last_error_at),
        }
    }

    /// The active routes, in config order.
    pub fn routes(&self) -> Vec<RouteStatus> {
        let snap = self.snapshot();
        snap.routes
            .iter()
            .zip(snap.config.routes())
            .map(|(stack, cfg)| RouteStatus {
                id: stack.id.to_string(),
                path: cfg.path.clone(),
                methods: cfg.methods.iter().map(|m| m.to_string()).collect(),
                services: stack
                    .targets
                    .iter()
                    .map(|t| (t.service.to_string(), t.weight))
                    .collect(),
                auth: stack.auth.as_ref().map(|a| a.names()).unwrap_or_default(),
                rate_limit: stack.limiter.as_ref().map(|l| l.quota().to_string()),
                rate_limit_by: stack.limiter.as_ref().map(|l| l.kind()),
                rate_limit_keys: stack.limiter.as_ref().map_or(0, |l| l.keys()),
                rate_limit_store: stack.limiter.as_ref().map(|l| l.store()),
            })
            .collect()
    }

    /// The upstream services with their breakers and instances.
    pub fn upstreams(&self) -> Vec<UpstreamStatus> {
        let snap = self.snapshot();
        snap.upstreams
            .iter()
            .map(|(name, entry)| {
                let up = &entry.upstream;
                let set = up.endpoints().snapshot();
                let breaker = up.breaker().snapshot();
                UpstreamStatus {
                    service: name.clone(),
                    breaker: breaker.state.as_str(),
                    breaker_failure_rate: breaker.failure_rate(),
                    stale: up.view().is_stale(),
                    panic: set.is_panic(),
                    retries: up.retries(),
                    instances: set
                        .endpoints()
                        .iter()
                        .map(|e| InstanceStatus {
                            id: e.id().to_string(),
                            addr: e.addr().to_string(),
                            healthy: e.is_healthy(),
                            ejected: e.is_ejected(),
                            in_flight: e.in_flight(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The balanced endpoints of an upstream service (health, ejection,
    /// load), `None` if the active config has no such service.
    pub fn endpoints(&self, service: &str) -> Option<EndpointSet> {
        self.snapshot()
            .upstreams
            .get(service)
            .map(|e| e.upstream.endpoints().clone())
    }

    /// The circuit breaker of an upstream service (one per service, shared
    /// by every route to it).
    pub fn breaker(&self, service: &str) -> Option<Breaker> {
        self.snapshot()
            .upstreams
            .get(service)
            .map(|e| e.upstream.breaker().clone())
    }
}
