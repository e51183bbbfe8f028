//! Component health: a registry of named checks, served on `/health/live`
//! and `/health/ready`.
//!
//! A [`HealthRegistry`] is a cheap, shared handle (clone it into every
//! component that registers a check). A [`Check`] is a named async function
//! returning up or down, with a [`Probe`] saying whether it counts for
//! liveness, readiness or both, a timeout (a check that takes longer is
//! down) and, optionally, a cache so an expensive check runs at most once per
//! `max_age`. Checks run concurrently; a check that panics is down.
//!
//! Readiness is also down while the registry is marked not ready
//! ([`HealthRegistry::set_ready`]), which the
//! [`shutdown`](crate::shutdown) coordinator does before draining, so load
//! balancers stop sending traffic first.
//!
//! [`HealthService`] answers `GET`/`HEAD` on `/health/live` and
//! `/health/ready` with `200` (up) or `503` (down) and a JSON body:
//!
//! ```json
//! {"status":"up","checks":{"db":{"status":"up","message":null,"duration_ms":3}}}
//! ```
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use msp_core::health::{Check, HealthRegistry};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db_ok = Arc::new(AtomicBool::new(true));
//! let health = HealthRegistry::new();
//! let flag = db_ok.clone();
//! health.register(
//!     Check::new("db", move || {
//!         let ok = flag.load(Ordering::SeqCst);
//!         async move { if ok { Ok(()) } else { Err("connection refused") } }
//!     })
//!     .readiness_only()
//!     .timeout(Duration::from_secs(1)),
//! );
//!
//! let ready = || Request::get("/health/ready").body(());
//! let res = health.service().oneshot(ready()?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! db_ok.store(false, Ordering::SeqCst);
//! let res = health.service().oneshot(ready()?).await?;
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! # Ok(())
//! # }
//! ```

mod service;

pub use self::service::{HealthService, ResponseFuture};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Up,
    /// Unhealthy.
    Down,
}

/// What a check returns: a status and an optional message.
///
/// Check functions may return anything that converts into it: `bool`,
/// `Result<(), E: Display>` (the error becomes the message), or a
/// `CheckResult` built with [`up`](Self::up) / [`down`](Self::down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    status: Status,
    message: Option<String>,
}

impl CheckResult {
    /// Healthy, no message.
    pub fn up() -> Self {
        CheckResult {
            status: Status::Up,
            message: None,
        }
    }

    /// Unhealthy, with a reason.
    pub fn down(message: impl Into<String>) -> Self {
        CheckResult {
            status: Status::Down,
            message: Some(message.into()),
        }
    }

    /// Adds or replaces the message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl From<bool> for CheckResult {
    fn from(up: bool) -> Self {
        if up {
            CheckResult::up()
        } else {
            CheckResult::down("check failed")
        }
    }
}

impl<E: fmt::Display> From<Result<(), E>> for CheckResult {
    fn from(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => CheckResult::up(),
            Err(e) => CheckResult::down(e.to_string()),
        }
    }
}

/// Which probe a check counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `/health/live` only: the process is wedged and should be restarted.
    Liveness,
    /// `/health/ready` only: the process should not get traffic right now.
    Readiness,
    /// Both probes.
    Both,
}

impl Probe {
    fn includes(self, probe: Probe) -> bool {
        self == Probe::Both || self == probe
    }
}

type CheckFn = dyn Fn() -> BoxFuture<'static, CheckResult> + Send + Sync;

/// A named health check; register it with [`HealthRegistry::register`].
pub struct Check {
    name: Arc<str>,
    probe: Probe,
    timeout: Duration,
    max_age: Option<Duration>,
    f: Arc<CheckFn>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("probe", &self.probe)
            .field("timeout", &self.timeout)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// The default timeout of a check.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A check named `name` running `f`; counts for both probes, times out
    /// after [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT), not cached.
    pub fn new<F, Fut, R>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Into<CheckResult> + 'static,
    {
        let name: String = name.into();
        Check {
            name: name.into(),
            probe: Probe::Both,
            timeout: Self::DEFAULT_TIMEOUT,
            max_age: None,
            f: Arc::new(move || f().map(Into::into).boxed()),
        }
    }

    /// Counts for `/health/live` only.
    #[must_use]
    pub fn liveness_only(mut self) -> Self {
        self.probe = Probe::Liveness;
        self
    }

    /// Counts for `/health/ready` only.
    #[must_use]
    pub fn readiness_only(mut self) -> Self {
        self.probe = Probe::Readiness;
        self
    }

    /// Sets which probes the check counts for.
    #[must_use]
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = probe;
        self
    }

    /// A run taking longer than `timeout` is down.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reuses a result for `max_age` instead of running the check on every
    /// probe. Concurrent probes of a stale result share one run.
    #[must_use]
    pub fn cache(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One check's entry in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentReport {
    /// Up or down.
    pub status: Status,
    /// Why, if the check said.
    pub message: Option<String>,
    /// How long the (last) run took, in milliseconds.
    pub duration_ms: u64,
}

/// The answer of a probe; serialises as the JSON body of [`HealthService`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Up when every check included in the probe is up (and, for
    /// readiness, the registry is marked ready).
    pub status: Status,
    /// The checks that ran, by name.
    pub checks: BTreeMap<String, ComponentReport>,
}

struct Registered {
    check: Check,
    cached: tokio::sync::Mutex<Option<(Instant, ComponentReport)>>,
}

struct Inner {
    checks: RwLock<Vec<Arc<Registered>>>,
    ready: AtomicBool,
}

/// The shared registry of health checks; cloning is cheap and every clone
/// sees the same checks. See the [module docs](self).
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Arc<str>> = self.checks().iter().map(|r| r.check.name.clone()).collect();
        f.debug_struct("HealthRegistry")
            .field("checks", &names)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// The pseudo-check shown in a readiness report while the registry is
/// marked not ready.
pub const NOT_READY_CHECK: &str = "ready";

impl HealthRegistry {
    /// An empty registry, marked ready.
    pub fn new() -> Self {
        HealthRegistry {
            inner: Arc::new(Inner {
                checks: RwLock::new(Vec::new()),
                ready: AtomicBool::new(true),
            }),
        }
    }

    fn checks(&self) -> Vec<Arc<Registered>> {
        match self.inner.checks.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Adds a check; a check with the same name is replaced.
    pub fn register(&self, check: Check) {
        let reg = Arc::new(Registered {
            check,
            cached: tokio::sync::Mutex::new(None),
        });
        let mut checks = match self.inner.checks.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        checks.retain(|r| r.check.name != reg.check.name);
        checks.push(reg);
    }

    /// Removes the check named `name`; `true` if there was one.
    pub fn deregister(&self, name: &str) -> bool {
        let mut checks = match self.inner.checks.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = checks.len();
        checks.retain(|r| &*r.check.name != name);
        checks.len() != before
    }

    /// Marks the process ready or not. While not ready, `/health/ready`
    /// answers 503 whatever the checks say (with a pseudo-check named
    /// [`NOT_READY_CHECK`] in the report); liveness is unaffected.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the registry is marked ready ([`set_ready`](Self::set_ready)).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Runs the liveness checks.
    pub async fn liveness(&self) -> HealthReport {
        self.run(Probe::Liveness).await
    }

    /// Runs the readiness checks.
    pub async fn readiness(&self) -> HealthReport {
        self.run(Probe::Readiness).await
    }

    async fn run(&self, probe: Probe) -> HealthReport {
        let checks: Vec<_> = self
            .checks()
            .into_iter()
            .filter(|r| r.check.probe.includes(probe))
            .collect();
        let results = futures_util::future::join_all(checks.iter().map(|r| run_one(r))).await;
        let mut report = HealthReport {
            status: Status::Up,
            checks: BTreeMap::new(),
        };
        for (reg, result) in checks.iter().zip(results) {
            if result.status == Status::Down {
                report.status = Status::Down;
            }
            report.checks.insert(reg.check.name.to_string(), result);
        }
        if probe == Probe::Readiness && !self.is_ready() {
            report.status = Status::Down;
            report.checks.insert(
                NOT_READY_CHECK.to_owned(),
                ComponentReport {
                    status: Status::Down,
                    message: Some("marked not ready (starting or shutting down)".to_owned()),
                    duration_ms: 0,
                },
            );
        }
        report
    }

    /// A [`HealthService`] answering from this registry.
    pub fn service(&self) -> HealthService {
        HealthService::new(self.clone())
    }
}

async fn run_one(reg: &Registered) -> ComponentReport {
    let Some(max_age) = reg.check.max_age else {
        return execute(&reg.check).await;
    };
    let mut cached = reg.cached.lock().await;
    if let Some((at, report)) = cached.as_ref()
        && at.elapsed() <= max_age
    {
        return report.clone();
    }
    let report = execute(&reg.check).await;
    *cached = Some((Instant::now(), report.clone()));
    report
}

async fn execute(check: &Check) -> ComponentReport {
    let start = Instant::now();
    // The call itself runs inside the future, so a panic there is caught too.
    let fut = AssertUnwindSafe(async { (check.f)().await }).catch_unwind();
    let result = match tokio::time::timeout(check.timeout, fut).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => CheckResult::down("check panicked"),
        Err(_elapsed) => CheckResult::down(format!("timed out after {:?}", check.timeout)),
    };
    ComponentReport {
        status: result.status,
        message: result.message,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
