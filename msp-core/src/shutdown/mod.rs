//! Graceful shutdown: stop taking traffic, deregister, drain, then exit.
//!
//! A [`Shutdown`] coordinator is triggered by SIGINT/SIGTERM
//! ([`Shutdown::listen_for_signals`]) or by code ([`Shutdown::trigger`]).
//! [`Shutdown::run`] then drives the sequence a load-balanced service needs:
//!
//! 1. wait for the trigger;
//! 2. mark the attached [`HealthRegistry`] not ready, so `/health/ready`
//!    answers 503 and load balancers stop routing here;
//! 3. run the [`before_drain`](Shutdown::before_drain) hooks in the order
//!    they were registered (deregistration from service discovery), each
//!    with its own timeout;
//! 4. wait the grace period (time for the others to notice), then resolve
//!    every [`ShutdownSignal`] — hand one to axum's
//!    `with_graceful_shutdown`, so the server stops accepting;
//! 5. drain: wait until the requests counted by [`DrainLayer`] (or held by
//!    [`InFlight`] guards) are done, or the drain timeout passes;
//! 6. run the [`after_drain`](Shutdown::after_drain) hooks (flush, close
//!    pools), and report what happened in a [`ShutdownReport`].
//!
//! All waiting uses `tokio::time`, so tests can pause time.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use msp_core::health::HealthRegistry;
//! use msp_core::shutdown::{DrainLayer, Shutdown};
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthRegistry::new();
//! let shutdown = Shutdown::builder()
//!     .health(health.clone())
//!     .drain_timeout(Duration::from_secs(10))
//!     .build();
//! shutdown.before_drain("deregister", Duration::from_secs(2), || async {
//!     // registration.deregister().await
//!     Ok::<(), std::io::Error>(())
//! });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(DrainLayer::new(&shutdown))
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hi")))
//!     }));
//! // With axum: axum::serve(listener, app).with_graceful_shutdown(shutdown.stop_accepting())
//! let stop_accepting = shutdown.stop_accepting();
//!
//! svc.oneshot(Request::new(())).await?;
//! shutdown.trigger(); // or SIGTERM, after `shutdown.listen_for_signals()?`
//! let report = shutdown.run().await;
//! stop_accepting.await;
//! assert!(!health.is_ready());
//! assert_eq!(report.drain.abandoned, 0);
//! assert!(report.hooks[0].outcome.is_completed());
//! # Ok(())
//! # }
//! ```

mod drain;

pub use self::drain::{Drain, DrainLayer, ResponseBody, ResponseFuture};

use crate::health::HealthRegistry;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

type HookFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), String>> + Send>;

struct Hook {
    name: String,
    timeout: Duration,
    f: HookFn,
}

#[derive(Default)]
struct Hooks {
    before: Vec<Hook>,
    after: Vec<Hook>,
}

struct Inner {
    triggered: CancellationToken,
    stop_accepting: CancellationToken,
    in_flight: AtomicUsize,
    idle: Notify,
    hooks: Mutex<Hooks>,
    health: Option<HealthRegistry>,
    grace_period: Duration,
    drain_timeout: Duration,
}

/// The graceful-shutdown coordinator; cheap to clone, every clone is the
/// same coordinator. See the [module docs](self).
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .field("in_flight", &self.in_flight())
            .field("grace_period", &self.inner.grace_period)
            .field("drain_timeout", &self.inner.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`Shutdown`].
#[derive(Debug, Default)]
#[must_use]
pub struct ShutdownBuilder {
    health: Option<HealthRegistry>,
    grace_period: Duration,
    drain_timeout: Option<Duration>,
}

impl ShutdownBuilder {
    /// Marks `health` not ready as the first step of the shutdown.
    pub fn health(mut self, health: HealthRegistry) -> Self {
        self.health = Some(health);
        self
    }

    /// Waits this long after the `before_drain` hooks before resolving the
    /// [`ShutdownSignal`]s (default: zero). Load balancers polling
    /// `/health/ready` need a few of their intervals to notice.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How long [`Shutdown::run`] waits for in-flight requests (default:
    /// [`Shutdown::DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// The coordinator.
    pub fn build(self) -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                triggered: CancellationToken::new(),
                stop_accepting: CancellationToken::new(),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                hooks: Mutex::new(Hooks::default()),
                health: self.health,
                grace_period: self.grace_period,
                drain_timeout: self
                    .drain_timeout
                    .unwrap_or(Shutdown::DEFAULT_DRAIN_TIMEOUT),
            }),
        }
    }
}

/// What a hook may return: `()` or `Result<(), E: Display>`.
pub trait HookOutput: Send + 'static {
    /// The hook's result, its error as text.
    fn into_result(self) -> Result<(), String>;
}

impl HookOutput for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> HookOutput for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// How one hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// It returned `Ok` (or `()`).
    Completed,
    /// It returned an error (the text) or panicked.
    Failed(String),
    /// It was still running at its timeout and was dropped.
    TimedOut,
}

impl HookOutcome {
    /// `true` for [`HookOutcome::Completed`].
    pub fn is_completed(&self) -> bool {
        matches!(self, HookOutcome::Completed)
    }
}

/// A hook's entry in the [`ShutdownReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    /// The name it was registered with.
    pub name: String,
    /// How it ended.
    pub outcome: HookOutcome,
    /// How long it ran.
    pub elapsed: Duration,
}

/// The result of a drain ([`Shutdown::drain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests in flight when the drain started.
    pub in_flight_at_start: usize,
    /// Requests still in flight when the deadline passed (0 when all
    /// finished).
    pub abandoned: usize,
    /// How long the drain waited.
    pub waited: Duration,
}

/// What [`Shutdown::run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every hook, `before_drain` ones first, in the order they ran.
    pub hooks: Vec<HookReport>,
    /// The drain of in-flight requests.
    pub drain: DrainReport,
}

impl Shutdown {
    /// The drain timeout unless set: 30 seconds (Kubernetes' default
    /// termination grace period).
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

    /// A coordinator with the defaults: no health registry, no grace period,
    /// [`DEFAULT_DRAIN_TIMEOUT`](Self::DEFAULT_DRAIN_TIMEOUT).
    pub fn new() -> Self {
        ShutdownBuilder::default().build()
    }

    /// A builder.
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder::default()
    }

    /// Triggers the shutdown (idempotent).
    pub fn trigger(&self) {
        self.inner.triggered.cancel();
    }

    /// Whether the shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.is_cancelled()
    }

    /// A future resolving when the shutdown is triggered.
    pub fn triggered(&self) -> ShutdownSignal {
        ShutdownSignal::new(self.inner.triggered.clone())
    }

    /// A future resolving when servers should stop accepting connections:
    /// step 4 of [`run`](Self::run). Give it to axum's
    /// `with_graceful_shutdown`. It only resolves while `run` is driving the
    /// shutdown.
    pub fn stop_accepting(&self) -> ShutdownSignal {
        ShutdownSignal::new(self.inner.stop_accepting.clone())
    }

    /// Triggers the shutdown on SIGINT or SIGTERM (on non-unix platforms,
    /// on Ctrl-C). Must be called inside a tokio runtime; fails if the
    /// signal handlers cannot be installed.
    pub fn listen_for_signals(&self) -> std::io::Result<()> {
        let me = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    () = me.inner.triggered.cancelled() => return,
                };
                tracing::info!(signal = name, "shutdown signal received");
                me.trigger();
            });
        }
        #[cfg(not(unix))]
        {
            tokio::spawn(async move {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => {
                        if r.is_ok() {
                            tracing::info!(signal = "ctrl-c", "shutdown signal received");
                            me.trigger();
                        }
                    }
                    () = me.inner.triggered.cancelled() => {}
                }
            });
        }
        Ok(())
    }

    fn add_hook<F, Fut>(&self, after: bool, name: impl Into<String>, timeout: Duration, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        let hook = Hook {
            name: name.into(),
            timeout,
            f: Box::new(move || f().map(HookOutput::into_result).boxed()),
        };
        let mut hooks = match self.inner.hooks.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if after {
            hooks.after.push(hook);
        } else {
            hooks.before.push(hook);
        }
    }

    /// Registers a hook run before the drain (deregistration), after the
    /// hooks registered before it; it is dropped if still running after
    /// `timeout`.
    pub fn before_drain<F, Fut>(&self, name: impl Into<String>, timeout: Duration, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.add_hook(false, name, timeout, f);
    }

    /// Registers a hook run after the drain (flushing, closing pools), in
    /// registration order, with a timeout.
    pub fn after_drain<F, Fut>(&self, name: impl Into<String>, timeout: Duration, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.add_hook(true, name, timeout, f);
    }

    /// Counts one in-flight unit of work until the guard is dropped; the
    /// drain waits for it. [`DrainLayer`] does this for each request.
    pub fn in_flight_guard(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            inner: self.inner.clone(),
        }
    }

    /// How many requests are in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight or `timeout` passes, whichever is
    /// first, and says how many were abandoned.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        let start = Instant::now();
        let deadline = start + timeout;
        let in_flight_at_start = self.in_flight();
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.in_flight();
            if now == 0 {
                return DrainReport {
                    in_flight_at_start,
                    abandoned: 0,
                    waited: start.elapsed(),
                };
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let abandoned = self.in_flight();
                if abandoned > 0 {
                    tracing::warn!(abandoned, "drain deadline passed with requests in flight");
                }
                return DrainReport {
                    in_flight_at_start,
                    abandoned,
                    waited: start.elapsed(),
                };
            }
        }
    }

    /// Drives the whole shutdown sequence of the [module docs](self) once
    /// triggered, and reports. Hooks run once: a second call runs none.
    pub async fn run(&self) -> ShutdownReport {
        self.inner.triggered.cancelled().await;
        tracing::info!("shutting down");
        if let Some(health) = &self.inner.health {
            health.set_ready(false);
        }
        let (before, after) = {
            let mut hooks = match self.inner.hooks.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let hooks = std::mem::take(&mut *hooks);
            (hooks.before, hooks.after)
        };
        let mut reports = Vec::with_capacity(before.len() + after.len());
        for hook in before {
            reports.push(run_hook(hook).await);
        }
        if !self.inner.grace_period.is_zero() {
            tokio::time::sleep(self.inner.grace_period).await;
        }
        self.inner.stop_accepting.cancel();
        let drain = self.drain(self.inner.drain_timeout).await;
        for hook in after {
            reports.push(run_hook(hook).await);
        }
        ShutdownReport {
            hooks: reports,
            drain,
        }
    }
}

async fn run_hook(hook: Hook) -> HookReport {
    let start = Instant::now();
    let f = hook.f;
    let fut = std::panic::AssertUnwindSafe(async move { f().await }).catch_unwind();
    let outcome = match tokio::time::timeout(hook.timeout, fut).await {
        Ok(Ok(Ok(()))) => HookOutcome::Completed,
        Ok(Ok(Err(e))) => HookOutcome::Failed(e),
        Ok(Err(_panic)) => HookOutcome::Failed("hook panicked".to_owned()),
        Err(_elapsed) => HookOutcome::TimedOut,
    };
    match &outcome {
        HookOutcome::Completed => tracing::debug!(hook = %hook.name, "shutdown hook completed"),
        HookOutcome::Failed(e) => {
            tracing::warn!(hook = %hook.name, error = %e, "shutdown hook failed")
        }
        HookOutcome::TimedOut => tracing::warn!(hook = %hook.name, "shutdown hook timed out"),
    }
    HookReport {
        name: hook.name,
        outcome,
        elapsed: start.elapsed(),
    }
}

/// One in-flight unit of work, counted until dropped; from
/// [`Shutdown::in_flight_guard`].
pub struct InFlight {
    inner: Arc<Inner>,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

pin_project! {
    /// A future resolving at a step of the shutdown ([`Shutdown::stop_accepting`],
    /// [`Shutdown::triggered`]). Cloning gives another future for the same
    /// event; once it happened, new ones resolve at once.
    pub struct ShutdownSignal {
        token: CancellationToken,
        #[pin]
        fut: WaitForCancellationFutureOwned,
    }
}

impl ShutdownSignal {
    fn new(token: CancellationToken) -> Self {
        ShutdownSignal {
            fut: token.clone().cancelled_owned(),
            token,
        }
    }
}

impl Clone for ShutdownSignal {
    fn clone(&self) -> Self {
        ShutdownSignal::new(self.token.clone())
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("done", &self.token.is_cancelled())
            .finish()
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().fut.poll(cx)
    }
}
