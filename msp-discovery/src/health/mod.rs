//! Active health checks: probe every endpoint on a timer and take the
//! failing ones out of balancing.
//!
//! A [`HealthCheck`] is one probe — [`HealthCheck::http`] (GET a path,
//! expect a `2xx` within the timeout), [`HealthCheck::tcp`] (a TCP connect)
//! or [`HealthCheck::custom`] (any async fn) — plus its schedule: interval,
//! jitter, timeout and the healthy / unhealthy thresholds (consecutive
//! results needed to flip, like Envoy and Kubernetes probes).
//! The HTTP and TCP checks can come from a configuration file as a
//! validated [`HealthCheckConfig`] ([`HealthCheck::from_config`]).
//! [`HealthCheck::spawn`] runs it on tokio for every member of an
//! [`EndpointSet`], starting and stopping per-endpoint tasks as membership
//! changes; verdicts go to [`EndpointSet::set_health`].
//!
//! Endpoints start healthy (a fresh registration gets traffic at once) and
//! are checked immediately, then every `interval × (1 ± jitter)`
//! ([`msp_core::backoff::jitter`]). If every
//! endpoint fails, the set balances over all of them anyway (panic mode, see
//! [`balance`](crate::balance)).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use msp_core::{Instance, ServiceName};
//! use msp_discovery::balance::{BalanceConfig, EndpointSet};
//! use msp_discovery::health::HealthCheck;
//! use std::time::Duration;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     axum::serve(listener, Router::new().route("/health", get(|| async { "ok" }))).await
//! });
//!
//! let set = EndpointSet::new(ServiceName::new("inventory")?, BalanceConfig::default());
//! set.update([Instance::parse("inventory", &addr.to_string())?]);
//!
//! let checks = HealthCheck::http("/health")
//!     .interval(Duration::from_secs(5))
//!     .timeout(Duration::from_secs(1))
//!     .unhealthy_threshold(2)
//!     .spawn(set.clone());
//!
//! // A one-off probe, as a registrar does before registering an instance.
//! HealthCheck::http("/health").probe(&Instance::parse("inventory", &addr.to_string())?).await?;
//! assert!(set.pick(None).unwrap().is_healthy());
//! drop(checks); // stops the checks
//! # Ok(())
//! # }
//! ```

mod config;

pub use self::config::{HealthCheckConfig, HealthCheckConfigBuilder, HealthCheckConfigError};

use crate::balance::{Endpoint, EndpointSet};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::{BoxError, Instance};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

type CustomFn = dyn Fn(Instance) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;

/// What a check does.
#[derive(Clone)]
enum Probe {
    Http {
        path: String,
        client: Box<Client<HttpConnector, Empty<Bytes>>>,
    },
    Tcp,
    Custom(Arc<CustomFn>),
}

/// An active health check and its schedule.
#[derive(Clone)]
#[must_use]
pub struct HealthCheck {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    jitter: f64,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No answer within the timeout.
    #[error("health check timed out after {0:?}")]
    Timeout(Duration),
    /// The HTTP check got a non-`2xx` status.
    #[error("health check answered {0}, expected 2xx")]
    Status(http::StatusCode),
    /// Connecting or talking to the endpoint failed.
    #[error("health check transport error: {0}")]
    Transport(#[source] BoxError),
    /// The custom check returned an error.
    #[error("health check failed: {0}")]
    Custom(#[source] BoxError),
}

impl HealthCheck {
    fn with(probe: Probe) -> Self {
        HealthCheck {
            probe,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }

    /// `GET http://{addr}{path}`, healthy on a `2xx` within the timeout.
    /// A path without a leading `/` gets one.
    pub fn http(path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let client = Client::builder(TokioExecutor::new())
            // A fresh connection per probe: a probe over a pooled connection
            // would not notice a listener that stopped accepting.
            .pool_max_idle_per_host(0)
            .build_http();
        Self::with(Probe::Http {
            path,
            client: Box::new(client),
        })
    }

    /// A TCP connect to the instance address.
    pub fn tcp() -> Self {
        Self::with(Probe::Tcp)
    }

    /// The HTTP or TCP check a [`HealthCheckConfig`] (from a file)
    /// describes, with its schedule.
    pub fn from_config(config: &HealthCheckConfig) -> Self {
        let check = match config.path() {
            Some(path) => Self::http(path),
            None => Self::tcp(),
        };
        check
            .interval(config.interval())
            .timeout(config.timeout())
            .jitter(config.jitter())
            .healthy_threshold(config.healthy_threshold())
            .unhealthy_threshold(config.unhealthy_threshold())
    }

    /// Any async check; `Ok` is healthy.
    pub fn custom<F, Fut>(check: F) -> Self
    where
        F: Fn(Instance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self::with(Probe::Custom(Arc::new(move |i| Box::pin(check(i)))))
    }

    /// Time between probes of one endpoint (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Time a probe may take (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Randomises each interval by up to this fraction either way (default
    /// 0.1, clamped to 0.0–1.0): each wait is drawn uniformly in
    /// `interval × (1 ± fraction)` ([`msp_core::backoff::jitter`], msp's one
    /// meaning of jitter), so checks of many endpoints spread out.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Consecutive successes that bring an unhealthy endpoint back (default
    /// 2, at least 1).
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n.max(1);
        self
    }

    /// Consecutive failures that take a healthy endpoint out (default 2, at
    /// least 1).
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n.max(1);
        self
    }

    /// Probes one instance once, with the timeout.
    pub async fn probe(&self, instance: &Instance) -> Result<(), CheckError> {
        match tokio::time::timeout(self.timeout, self.probe_inner(instance)).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::Timeout(self.timeout)),
        }
    }

    async fn probe_inner(&self, instance: &Instance) -> Result<(), CheckError> {
        match &self.probe {
            Probe::Http { path, client } => {
                let uri = format!("http://{}{}", instance.addr(), path);
                let req = http::Request::get(uri)
                    .header(http::header::USER_AGENT, "msp-discovery-health-check")
                    .body(Empty::new())
                    .map_err(|e| CheckError::Transport(e.into()))?;
                let res = client
                    .request(req)
                    .await
                    .map_err(|e| CheckError::Transport(e.into()))?;
                if res.status().is_success() {
                    Ok(())
                } else {
                    Err(CheckError::Status(res.status()))
                }
            }
            Probe::Tcp => tokio::net::TcpStream::connect(instance.addr())
                .await
                .map(drop)
                .map_err(|e| CheckError::Transport(e.into())),
            Probe::Custom(f) => f(instance.clone()).await.map_err(CheckError::Custom),
        }
    }

    /// Runs the check for every member of `set`, on the current tokio
    /// runtime, until the returned handle is dropped or
    /// [stopped](HealthChecks::stop).
    pub fn spawn(self, set: EndpointSet) -> HealthChecks {
        let task = tokio::spawn(supervise(Arc::new(self), set));
        HealthChecks { task }
    }

    fn next_delay(&self, rng: &mut SmallRng) -> Duration {
        msp_core::backoff::jitter(self.interval, self.jitter, rng)
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let probe = match &self.probe {
            Probe::Http { path, .. } => format!("http GET {path}"),
            Probe::Tcp => "tcp connect".to_owned(),
            Probe::Custom(_) => "custom".to_owned(),
        };
        f.debug_struct("HealthCheck")
            .field("probe", &probe)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("jitter", &self.jitter)
            .field("healthy_threshold", &self.healthy_threshold)
            .field("unhealthy_threshold", &self.unhealthy_threshold)
            .finish()
    }
}

/// Running health checks, from [`HealthCheck::spawn`]. Dropping it stops
/// them.
#[derive(Debug)]
pub struct HealthChecks {
    task: JoinHandle<()>,
}

impl HealthChecks {
    /// Stops every check.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a task per member, stops the tasks of members that left.
async fn supervise(check: Arc<HealthCheck>, set: EndpointSet) {
    let mut changes = set.subscribe();
    let mut tasks = JoinSet::new();
    let mut running: HashMap<msp_core::InstanceId, (Endpoint, AbortHandle)> = HashMap::new();
    loop {
        let snap = set.snapshot();
        running.retain(|id, (ep, handle)| {
            let keep = snap.get(id).is_some_and(|e| e.same(ep));
            if !keep {
                handle.abort();
            }
            keep
        });
        for ep in snap.endpoints() {
            if !running.contains_key(ep.id()) {
                let handle = tasks.spawn(check_endpoint(check.clone(), set.clone(), ep.clone()));
                running.insert(ep.id().clone(), (ep.clone(), handle));
            }
        }
        // Reap finished (aborted) tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        if changes.changed().await.is_err() {
            return;
        }
    }
}

async fn check_endpoint(check: Arc<HealthCheck>, set: EndpointSet, ep: Endpoint) {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        match check.probe(ep.instance()).await {
            Ok(()) => {
                successes = successes.saturating_add(1);
                failures = 0;
                if !ep.is_healthy() && successes >= check.healthy_threshold {
                    set.set_health(&ep, true);
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                successes = 0;
                tracing::debug!(service = %set.service(), instance = %ep.id(), %error, failures, "health check failed");
                if ep.is_healthy() && failures >= check.unhealthy_threshold {
                    set.set_health(&ep, false);
                }
            }
        }
        tokio::time::sleep(check.next_delay(&mut rng)).await;
    }
}
