//! The [`Registration`] handle: keeps an instance registered.
//!
//! [`Registry::register`](super::Registry::register) returns a
//! `Registration`. While it lives, a background task:
//!
//! - renews the lease with **jittered heartbeats**, by default every
//!   `ttl / 3` ± 20 % (msp-core's one meaning of jitter,
//!   [`msp_core::backoff::jitter`]: uniform in `period × (1 ± fraction)`),
//!   so a fleet started together does not heartbeat together;
//! - retries a failed renewal sooner (with [`Backoff`]) while the lease may
//!   still be alive ([`RegistrationStatus::Unconfirmed`]);
//! - **registers again** once the lease is known lost — the backend says so
//!   (etcd answers a keep-alive with TTL 0 after a restart or expiry), or no
//!   renewal succeeded for a whole TTL — with backoff until it succeeds
//!   ([`RegistrationStatus::Lost`]);
//! - deregisters when the handle is dropped (best effort, on the tokio
//!   runtime), when [`Registration::deregister`] is awaited, as a step of
//!   msp-core's graceful shutdown
//!   ([`Registration::deregister_before_drain`]), or when the future given
//!   to [`Registration::deregister_on`] (any shutdown signal) completes.
//!
//! Backends plug in through the [`Lease`] trait; implement it to give a
//! custom [`Registry`](super::Registry) the same behaviour.
//!
//! # Example
//!
//! ```
//! use msp_core::Instance;
//! use msp_discovery::registry::{MemoryRegistry, Registry, RegistrationStatus};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let me = Instance::parse("billing", "127.0.0.1:7000")?;
//! let registration = registry.register(me.clone(), Duration::from_secs(30)).await?;
//! assert_eq!(registration.status(), RegistrationStatus::Registered);
//!
//! // Deregister when the process is asked to stop. Any future works, e.g.
//! // `tokio::signal::ctrl_c()` or msp-core's shutdown signal.
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = registration.deregister_on(stopped);
//! stop.send(()).ok();
//! task.await??;
//! assert!(registry.instances(me.service()).await?.is_empty());
//! # Ok(())
//! # }
//! ```

mod config;

pub use self::config::{RegistrationConfig, RegistrationConfigBuilder, RegistrationConfigError};

use crate::registry::RegistryError;
use msp_core::Instance;
use msp_core::backoff::Backoff;
use msp_core::shutdown::Shutdown;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The backend half of a [`Registration`]: one instance's lease.
///
/// A `Lease` value owns everything it needs (client, instance, TTL) and is
/// driven by one task: [`acquire`](Lease::acquire) once at registration and
/// again after a loss, [`renew`](Lease::renew) on every heartbeat,
/// [`release`](Lease::release) once at the end. Calls never overlap.
pub trait Lease: Send + 'static {
    /// Grants a new lease and stores the instance under it.
    fn acquire(&mut self) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Renews the current lease.
    ///
    /// Returns [`RegistryError::LeaseLost`] (or any non-transient error)
    /// when the lease no longer exists, so the registration acquires a new
    /// one; a [transient](RegistryError::is_transient) error means "try
    /// again soon".
    fn renew(&mut self) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Revokes the lease and removes the instance (deregistration).
    fn release(&mut self) -> impl Future<Output = Result<(), RegistryError>> + Send;
}

/// Where a [`Registration`] stands, from [`Registration::status`] or
/// [`Registration::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationStatus {
    /// The instance is registered and the last renewal succeeded.
    Registered,
    /// The last renewal failed with a transient error; the lease has not
    /// expired yet and renewals are being retried.
    Unconfirmed,
    /// The lease is gone (expired, revoked, lost in a registry restart or a
    /// partition); registering again with backoff.
    Lost,
    /// The registration ended: deregistered on request, on drop or on
    /// shutdown.
    Deregistered,
    /// Heartbeats stopped without deregistering
    /// ([`Registration::abandon`]); the lease expires on its own.
    Abandoned,
}

#[derive(Debug)]
enum Command {
    Deregister(oneshot::Sender<Result<(), RegistryError>>),
    Abandon,
}

/// A live registration: keeps one instance registered until dropped.
///
/// Dropping it deregisters in the background (best effort: it needs the
/// tokio runtime to still be running). To know the outcome, await
/// [`deregister`](Registration::deregister), or hand it to a shutdown
/// signal with [`deregister_on`](Registration::deregister_on). See the
/// [module docs](self) for the heartbeat and re-registration behaviour.
#[derive(Debug)]
#[must_use = "dropping a Registration deregisters the instance"]
pub struct Registration {
    instance: Instance,
    status: watch::Receiver<RegistrationStatus>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Registration {
    /// Acquires `lease` once and, on success, spawns the task that keeps it.
    ///
    /// This is how a [`Registry`](super::Registry) implementation builds
    /// the handle its `register` returns. Must be called on a tokio
    /// runtime.
    pub async fn start<L: Lease>(
        mut lease: L,
        instance: Instance,
        ttl: Duration,
        config: RegistrationConfig,
    ) -> Result<Registration, RegistryError> {
        config.validate(ttl)?;
        let timeout = config.timeout_for(ttl);
        match tokio::time::timeout(timeout, lease.acquire()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(RegistryError::Timeout {
                    backend: "registration",
                    operation: "register",
                });
            }
        }
        tracing::info!(service = %instance.service(), instance = %instance.id(), addr = %instance.addr(), ?ttl, "registered");
        let (status_tx, status) = watch::channel(RegistrationStatus::Registered);
        let (commands, rx) = mpsc::unbounded_channel();
        let keeper = Keeper {
            lease,
            instance: instance.clone(),
            ttl,
            heartbeat: config.heartbeat_for(ttl),
            jitter: config.jitter(),
            timeout,
            retry: config.retry().clone(),
            status: status_tx,
            commands: rx,
            rng: SmallRng::from_rng(&mut rand::rng()),
        };
        tokio::spawn(keeper.run());
        Ok(Registration {
            instance,
            status,
            commands,
        })
    }

    /// The registered instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The current status.
    pub fn status(&self) -> RegistrationStatus {
        *self.status.borrow()
    }

    /// Whether the instance is registered (the lease is believed alive:
    /// [`Registered`](RegistrationStatus::Registered) or
    /// [`Unconfirmed`](RegistrationStatus::Unconfirmed)).
    pub fn is_registered(&self) -> bool {
        matches!(
            self.status(),
            RegistrationStatus::Registered | RegistrationStatus::Unconfirmed
        )
    }

    /// A channel that sees every status change (for health endpoints or
    /// tests: `rx.wait_for(|s| *s == RegistrationStatus::Registered)`).
    pub fn subscribe(&self) -> watch::Receiver<RegistrationStatus> {
        self.status.clone()
    }

    /// Deregisters now and reports whether the backend confirmed it.
    pub async fn deregister(self) -> Result<(), RegistryError> {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Deregister(reply)).is_err() {
            // The keeper is gone: it only ends after deregistering.
            return Ok(());
        }
        done.await.unwrap_or(Ok(()))
    }

    /// Stops heartbeating **without** deregistering: the instance stays
    /// registered until its lease expires, exactly as if the process had
    /// crashed. For crash simulations in tests and for handing an instance
    /// over to a successor process that registers the same id.
    pub fn abandon(self) {
        // If the keeper is already gone there is nothing to stop.
        let _ = self.commands.send(Command::Abandon);
    }

    /// Keeps the registration until `shutdown` completes, then
    /// deregisters; returns the task, whose output is the deregistration's
    /// result.
    ///
    /// `shutdown` can be any future: `tokio::signal::ctrl_c()`, a
    /// `CancellationToken::cancelled_owned()`, or msp-core's
    /// [`Shutdown::triggered`](msp_core::shutdown::Shutdown::triggered)
    /// (though [`deregister_before_drain`](Self::deregister_before_drain)
    /// fits msp-core's shutdown sequence better). Must be called on a
    /// tokio runtime.
    pub fn deregister_on<F>(self, shutdown: F) -> JoinHandle<Result<(), RegistryError>>
    where
        F: Future + Send + 'static,
    {
        tokio::spawn(async move {
            shutdown.await;
            self.deregister().await
        })
    }
}

impl Registration {
    /// Deregisters as a step of msp-core's graceful shutdown: a
    /// [`before_drain`](Shutdown::before_drain) hook named `"deregister
    /// {service}/{id}"`, bounded by `timeout`.
    ///
    /// When [`Shutdown::run`] drives the shutdown, the instance leaves the
    /// registry right after the service is marked not ready and *before*
    /// the server stops accepting and drains — so clients stop picking it
    /// while its in-flight requests still complete. The hook's outcome
    /// (completed, failed, timed out) is in the
    /// [`ShutdownReport`](msp_core::shutdown::ShutdownReport); a failed or
    /// timed-out deregistration leaves the lease to expire on its own.
    ///
    /// ```
    /// use msp_core::Instance;
    /// use msp_core::shutdown::Shutdown;
    /// use msp_discovery::{MemoryRegistry, Registry};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = MemoryRegistry::new();
    /// let shutdown = Shutdown::new();
    /// let me = Instance::parse("billing", "127.0.0.1:7000")?;
    /// registry
    ///     .register(me.clone(), Duration::from_secs(30))
    ///     .await?
    ///     .deregister_before_drain(&shutdown, Duration::from_secs(2));
    ///
    /// shutdown.trigger(); // SIGTERM, after `shutdown.listen_for_signals()?`
    /// let report = shutdown.run().await;
    /// assert!(report.hooks[0].outcome.is_completed());
    /// assert!(registry.instances(me.service()).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn deregister_before_drain(self, shutdown: &Shutdown, timeout: Duration) {
        let name = format!(
            "deregister {}/{}",
            self.instance.service(),
            self.instance.id()
        );
        shutdown.before_drain(name, timeout, move || self.deregister());
    }
}

struct Keeper<L> {
    lease: L,
    instance: Instance,
    ttl: Duration,
    heartbeat: Duration,
    jitter: f64,
    timeout: Duration,
    retry: Backoff,
    status: watch::Sender<RegistrationStatus>,
    commands: mpsc::UnboundedReceiver<Command>,
    rng: SmallRng,
}

/// Why the keeper stopped: a command, or `None` when the handle was
/// dropped (deregister without reply).
type Stop = Option<Command>;

impl<L: Lease> Keeper<L> {
    async fn run(mut self) {
        let stop = self.keep().await;
        if let Some(Command::Abandon) = stop {
            tracing::info!(service = %self.instance.service(), instance = %self.instance.id(), "registration abandoned; the lease will expire on its own");
            self.status.send_replace(RegistrationStatus::Abandoned);
            return;
        }
        let result = match tokio::time::timeout(self.timeout, self.lease.release()).await {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Timeout {
                backend: "registration",
                operation: "deregister",
            }),
        };
        match &result {
            Ok(()) => {
                tracing::info!(service = %self.instance.service(), instance = %self.instance.id(), "deregistered")
            }
            Err(e) => {
                tracing::warn!(service = %self.instance.service(), instance = %self.instance.id(), error = %e, "deregistration failed; the lease will expire on its own")
            }
        }
        self.status.send_replace(RegistrationStatus::Deregistered);
        if let Some(Command::Deregister(reply)) = stop {
            // The caller may have stopped waiting; nothing to do then.
            let _ = reply.send(result);
        }
    }

    fn jittered(&mut self, period: Duration) -> Duration {
        msp_core::backoff::jitter(period, self.jitter, &mut self.rng)
    }

    /// Heartbeats until asked to stop.
    async fn keep(&mut self) -> Stop {
        let mut last_renewed = Instant::now();
        let mut retries = self.retry.iter();
        let mut wait = self.jittered(self.heartbeat);
        loop {
            tokio::select! {
                cmd = self.commands.recv() => return cmd,
                () = tokio::time::sleep(wait) => {}
            }
            let outcome = tokio::time::timeout(self.timeout, self.lease.renew()).await;
            let error = match outcome {
                Ok(Ok(())) => {
                    last_renewed = Instant::now();
                    retries.reset();
                    self.status.send_if_modified(|s| {
                        let changed = *s != RegistrationStatus::Registered;
                        *s = RegistrationStatus::Registered;
                        changed
                    });
                    wait = self.jittered(self.heartbeat);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => RegistryError::Timeout {
                    backend: "registration",
                    operation: "renew",
                },
            };
            let expired = last_renewed.elapsed() >= self.ttl;
            if error.is_transient() && !expired {
                tracing::warn!(service = %self.instance.service(), instance = %self.instance.id(), error = %error, "lease renewal failed; retrying");
                self.status.send_replace(RegistrationStatus::Unconfirmed);
                wait = retries.next().unwrap_or(self.heartbeat).min(self.heartbeat);
                continue;
            }
            tracing::warn!(service = %self.instance.service(), instance = %self.instance.id(), error = %error, "lease lost; registering again");
            self.status.send_replace(RegistrationStatus::Lost);
            if let Some(stop) = self.reacquire().await {
                return stop;
            }
            last_renewed = Instant::now();
            retries.reset();
            wait = self.jittered(self.heartbeat);
        }
    }

    /// Acquires a new lease with backoff; returns `Some` if asked to stop
    /// meanwhile.
    async fn reacquire(&mut self) -> Option<Stop> {
        let mut delays = self.retry.iter();
        loop {
            let outcome = tokio::time::timeout(self.timeout, self.lease.acquire()).await;
            match outcome {
                Ok(Ok(())) => {
                    metrics::counter!("msp_discovery_reregistrations_total", "service" => self.instance.service().to_string()).increment(1);
                    tracing::info!(service = %self.instance.service(), instance = %self.instance.id(), "registered again after losing the lease");
                    self.status.send_replace(RegistrationStatus::Registered);
                    return None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(service = %self.instance.service(), instance = %self.instance.id(), error = %e, "registering again failed");
                }
                Err(_) => {
                    tracing::warn!(service = %self.instance.service(), instance = %self.instance.id(), "registering again timed out");
                }
            }
            // The policy's attempt/elapsed limits do not apply: start over.
            let delay = match delays.next() {
                Some(d) => d,
                None => {
                    delays.reset();
                    self.retry.max_delay()
                }
            };
            tokio::select! {
                cmd = self.commands.recv() => return Some(cmd),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}
