//! Third-party registration: a [`Registrar`] registers instances it
//! health-checks, for services that cannot register themselves (a legacy
//! process, a database, a sidecar-less container).
//!
//! Each instance is checked every [`interval`](Registrar::interval) with
//! the async function you give (any closure returning `bool` or a
//! `Result`; a check slower than [`timeout`](Registrar::timeout) fails). An
//! instance starts unregistered, is **registered** after
//! [`healthy_threshold`](Registrar::healthy_threshold) consecutive passing
//! checks and **deregistered** after
//! [`unhealthy_threshold`](Registrar::unhealthy_threshold) consecutive
//! failing ones, as Consul and Envoy do. While registered, the usual
//! [`Registration`] keeps its lease alive.
//!
//! Richer checks (HTTP, TCP) live in the crate's `health` module; this one is
//! deliberately closure-based so any of them, or your own, plugs in.
//!
//! # Example
//!
//! ```
//! use msp_core::Instance;
//! use msp_discovery::registry::{MemoryRegistry, Registrar, Registry};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let legacy = Instance::parse("legacy-billing", "127.0.0.1:9400")?;
//!
//! let handle = Registrar::new(registry.clone(), |instance: Instance| async move {
//!     // e.g. TCP-connect to instance.addr(); here: always healthy.
//!     instance.addr().port() == 9400
//! })
//! .instance(legacy.clone())
//! .interval(Duration::from_secs(5))
//! .healthy_threshold(2)
//! .spawn();
//!
//! let mut states = handle.subscribe();
//! states.wait_for(|s| s.get(legacy.id()).is_some_and(|t| t.registered)).await?;
//! assert_eq!(registry.instances(legacy.service()).await?, vec![legacy.clone()]);
//!
//! handle.stop().await; // deregisters everything it registered
//! assert!(registry.instances(legacy.service()).await?.is_empty());
//! # Ok(())
//! # }
//! ```

use super::{Registration, Registry};
use msp_core::{Instance, InstanceId};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// The result of one health check: `true`/`Ok(_)` passes.
pub trait CheckOutcome {
    /// Whether the check passed.
    fn passed(&self) -> bool;
}

impl CheckOutcome for bool {
    fn passed(&self) -> bool {
        *self
    }
}

impl<T, E> CheckOutcome for Result<T, E> {
    fn passed(&self) -> bool {
        self.is_ok()
    }
}

/// What a [`Registrar`] knows about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TargetState {
    /// Whether the instance is considered healthy (thresholds applied).
    pub healthy: bool,
    /// Whether it is currently registered.
    pub registered: bool,
    /// Consecutive passing checks (0 after a failure).
    pub passes: u32,
    /// Consecutive failing checks (0 after a pass).
    pub failures: u32,
}

/// Registers the instances it health-checks. See the [module docs](self).
#[must_use]
pub struct Registrar<R, C> {
    registry: R,
    check: C,
    instances: Vec<Instance>,
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    ttl: Duration,
}

impl<R, C> fmt::Debug for Registrar<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar")
            .field("instances", &self.instances.len())
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("healthy_threshold", &self.healthy_threshold)
            .field("unhealthy_threshold", &self.unhealthy_threshold)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<R, C, F> Registrar<R, C>
where
    R: Registry,
    C: Fn(Instance) -> F + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: CheckOutcome,
{
    /// A registrar registering into `registry` the instances that pass
    /// `check`. Defaults: every 10 s, 5 s timeout, 2 passes to register,
    /// 3 failures to deregister, lease TTL 30 s.
    pub fn new(registry: R, check: C) -> Self {
        Registrar {
            registry,
            check,
            instances: Vec::new(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ttl: Duration::from_secs(30),
        }
    }

    /// Adds an instance to check.
    pub fn instance(mut self, instance: Instance) -> Self {
        self.instances.push(instance);
        self
    }

    /// Adds instances to check.
    pub fn instances(mut self, instances: impl IntoIterator<Item = Instance>) -> Self {
        self.instances.extend(instances);
        self
    }

    /// Time between checks of one instance (at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A check still running after this fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Consecutive passes before an instance is registered (at least 1).
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n.max(1);
        self
    }

    /// Consecutive failures before an instance is deregistered (at least
    /// 1).
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n.max(1);
        self
    }

    /// The lease TTL of the registrations.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Starts checking (one task per instance). Must be called on a tokio
    /// runtime.
    pub fn spawn(self) -> RegistrarHandle {
        let registry = Arc::new(self.registry);
        let check = Arc::new(self.check);
        let initial: BTreeMap<_, _> = self
            .instances
            .iter()
            .map(|i| (i.id().clone(), TargetState::default()))
            .collect();
        let (states, rx) = watch::channel(initial);
        let states = Arc::new(states);
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for instance in self.instances {
            let target = Target {
                registry: registry.clone(),
                check: check.clone(),
                instance,
                interval: self.interval,
                timeout: self.timeout,
                healthy_threshold: self.healthy_threshold,
                unhealthy_threshold: self.unhealthy_threshold,
                ttl: self.ttl,
                states: states.clone(),
                state: TargetState::default(),
                registration: None,
            };
            tasks.spawn(target.run(stopped.clone()));
        }
        RegistrarHandle {
            states: rx,
            stop,
            tasks,
        }
    }
}

/// The running [`Registrar`]: its per-instance states; stops (and
/// deregisters everything) when stopped or dropped.
#[derive(Debug)]
pub struct RegistrarHandle {
    states: watch::Receiver<BTreeMap<InstanceId, TargetState>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RegistrarHandle {
    /// The current state of every instance.
    pub fn states(&self) -> BTreeMap<InstanceId, TargetState> {
        self.states.borrow().clone()
    }

    /// The ids of the instances registered right now.
    pub fn registered(&self) -> Vec<InstanceId> {
        self.states
            .borrow()
            .iter()
            .filter(|(_, s)| s.registered)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A channel seeing every state change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<InstanceId, TargetState>> {
        self.states.clone()
    }

    /// Stops checking and waits until every registered instance is
    /// deregistered.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for RegistrarHandle {
    /// Stops the checks; the registrations are dropped, which
    /// deregisters them in the background.
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.tasks.detach_all();
    }
}

struct Target<R, C> {
    registry: Arc<R>,
    check: Arc<C>,
    instance: Instance,
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    ttl: Duration,
    states: Arc<watch::Sender<BTreeMap<InstanceId, TargetState>>>,
    state: TargetState,
    registration: Option<Registration>,
}

impl<R, C, F> Target<R, C>
where
    R: Registry,
    C: Fn(Instance) -> F + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: CheckOutcome,
{
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = ticks.tick() => {}
            }
            let passed = tokio::time::timeout(self.timeout, (self.check)(self.instance.clone()))
                .await
                .is_ok_and(|outcome| outcome.passed());
            self.record(passed).await;
        }
        if let Some(registration) = self.registration.take() {
            if let Err(error) = registration.deregister().await {
                tracing::warn!(instance = %self.instance.id(), %error, "deregistration failed");
            }
            self.state.registered = false;
            self.publish();
        }
    }

    async fn record(&mut self, passed: bool) {
        if passed {
            self.state.passes = self.state.passes.saturating_add(1);
            self.state.failures = 0;
            if !self.state.healthy && self.state.passes >= self.healthy_threshold {
                tracing::info!(service = %self.instance.service(), instance = %self.instance.id(), "instance healthy");
                self.state.healthy = true;
            }
        } else {
            self.state.failures = self.state.failures.saturating_add(1);
            self.state.passes = 0;
            if self.state.healthy && self.state.failures >= self.unhealthy_threshold {
                tracing::warn!(service = %self.instance.service(), instance = %self.instance.id(), "instance unhealthy");
                self.state.healthy = false;
            }
        }
        match (self.state.healthy, self.registration.is_some()) {
            (true, false) => {
                match self
                    .registry
                    .register(self.instance.clone(), self.ttl)
                    .await
                {
                    Ok(registration) => self.registration = Some(registration),
                    // Retried at the next check.
                    Err(error) => {
                        tracing::warn!(instance = %self.instance.id(), %error, "registering a healthy instance failed")
                    }
                }
            }
            (false, true) => {
                if let Some(registration) = self.registration.take()
                    && let Err(error) = registration.deregister().await
                {
                    tracing::warn!(instance = %self.instance.id(), %error, "deregistering an unhealthy instance failed; its lease will expire");
                }
            }
            _ => {}
        }
        self.state.registered = self.registration.is_some();
        self.publish();
    }

    fn publish(&self) {
        let state = self.state;
        let id = self.instance.id().clone();
        self.states.send_if_modified(|all| {
            if all.get(&id) == Some(&state) {
                return false;
            }
            all.insert(id, state);
            true
        });
    }
}
