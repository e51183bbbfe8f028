//! The orchestrator: runs sagas, persists every transition before the effect
//! it guards, recovers sagas after a crash, and exposes the query and
//! operator APIs.
//!
//! | file | responsibility |
//! |---|---|
//! | `mod.rs` | [`Orchestrator`]: starting, recovering, operating and querying sagas |
//! | `builder.rs` | [`OrchestratorBuilder`]: settings and their validation |
//! | `handle.rs` | [`SagaHandle`], [`RecoveryLoop`], [`SagaNotice`] |
//! | `error.rs` | [`SagaError`], [`OrchestratorConfigError`] |
//! | `run.rs` | replaying a saga's log and planning its next step |
//! | `driver.rs` | driving one saga: start, call, commit, lease renewal |
//! | `attempt.rs` | one call of a step and the events that record its result |

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::definition::{ErasedSaga, Saga};
use super::log::{LogEvent, SagaRecord, SagaState, now_ms};
use super::store::{NewSaga, SagaStore, Transition};

mod attempt;
mod builder;
mod driver;
mod error;
mod handle;
mod run;

pub use self::builder::OrchestratorBuilder;
pub use self::error::{OrchestratorConfigError, SagaError};
pub use self::handle::{RecoveryLoop, SagaHandle, SagaNotice};

use self::driver::Driver;
use self::handle::Done;
use self::run::Run;

/// What the clones of an [`Orchestrator`] and its drivers share.
struct Inner<S> {
    store: S,
    owner: String,
    lease: Duration,
    poll_interval: Duration,
    claim_batch: usize,
    max_active: usize,
    sagas: RwLock<HashMap<String, Arc<dyn ErasedSaga>>>,
    active: Mutex<HashSet<Uuid>>,
    active_count: watch::Sender<usize>,
    notices: broadcast::Sender<SagaNotice>,
}

/// Runs sagas durably on a [`SagaStore`].
///
/// - [`start`](Orchestrator::start) persists a new saga together with its
///   first `StepStarted` (one commit) and drives it in a background task.
///   Each step's success is committed together with the next step's start,
///   and the last success together with `Completed`: a saga of *n* steps
///   costs *n + 1* commits on the happy path.
/// - A failure (permanent, retries exhausted, or a timeout) compensates
///   every step that may have had an effect, in reverse order, retrying
///   each compensation with its backoff until it succeeds (or, with a cap,
///   marking the saga [`Stuck`](SagaState::Stuck)).
/// - [`spawn_recovery`](Orchestrator::spawn_recovery) claims sagas whose
///   lease expired (their orchestrator died) or whose retry is due, and
///   resumes them from their log: a step that was started but has no
///   recorded outcome is called again with the same idempotency key.
///
/// Cheap to clone; clones share everything.
///
/// # Example
///
/// ```
/// use msp_saga::saga::store::MemorySagaStore;
/// use msp_saga::saga::{Orchestrator, Saga, SagaState, StepError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let saga = Saga::<u32>::builder("double")
///     .step("double", |ctx| async move { Ok::<_, StepError>(*ctx.data() * 2) })
///     .step("check", |ctx| async move {
///         let doubled: u32 = ctx.output("double")?;
///         if doubled > 100 { Err(StepError::permanent("too big")) } else { Ok(()) }
///     })
///     .build()?;
/// let orchestrator = Orchestrator::builder(MemorySagaStore::new())
///     .register(&saga)
///     .build()?;
/// let _recovery = orchestrator.spawn_recovery();
///
/// let handle = orchestrator.start(&saga, 21).await?;
/// assert_eq!(handle.wait().await?, SagaState::Completed);
/// let handle = orchestrator.start(&saga, 51).await?;
/// let id = handle.id();
/// assert_eq!(handle.wait().await?, SagaState::Compensated);
/// let record = orchestrator.get(id).await?.expect("stored");
/// for entry in &record.log {
///     println!("{entry}");
/// }
/// # Ok(()) }
/// ```
pub struct Orchestrator<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Orchestrator<S> {
    fn clone(&self) -> Self {
        Orchestrator {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for Orchestrator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("owner", &self.inner.owner)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

/// Removes a saga from the active set when its driver ends.
struct ActiveGuard<S> {
    inner: Arc<Inner<S>>,
    id: Uuid,
}

impl<S> Drop for ActiveGuard<S> {
    fn drop(&mut self) {
        let mut active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        active.remove(&self.id);
        self.inner.active_count.send_replace(active.len());
    }
}

impl<S> Inner<S> {
    fn definition(&self, name: &str) -> Option<Arc<dyn ErasedSaga>> {
        self.sagas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

impl<S: SagaStore> Orchestrator<S> {
    /// Starts configuring an orchestrator on `store`.
    pub fn builder(store: S) -> OrchestratorBuilder<S> {
        OrchestratorBuilder::new(store)
    }

    /// This orchestrator's owner id.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// Starts a saga with a new id and drives it in a background task.
    ///
    /// When this returns, the saga and its first `StepStarted` are
    /// committed: a crash from here on loses nothing.
    pub async fn start<D>(&self, saga: &Saga<D>, data: D) -> Result<SagaHandle, SagaError>
    where
        D: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.start_with_id(saga, Uuid::now_v7(), data).await
    }

    /// Like [`start`](Orchestrator::start) with a caller-chosen id (for
    /// example derived from an order id), so a retried request cannot start
    /// the saga twice: the second call fails with
    /// [`StoreError::Duplicate`](crate::saga::store::StoreError::Duplicate).
    pub async fn start_with_id<D>(
        &self,
        saga: &Saga<D>,
        id: Uuid,
        data: D,
    ) -> Result<SagaHandle, SagaError>
    where
        D: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let def = self
            .inner
            .definition(saga.name())
            .ok_or_else(|| SagaError::UnknownSaga(saga.name().to_owned()))?;
        let json = serde_json::to_value(&data)?;
        let first = def.steps()[0].name.to_string();
        let now = now_ms();
        let lease_until = now.saturating_add(self.inner.lease_ms());
        let events = vec![LogEvent::StepStarted {
            step: first,
            attempt: 1,
        }];
        self.inner
            .store
            .create(NewSaga {
                id,
                name: saga.name().to_owned(),
                data: json,
                state: SagaState::Running,
                owner: Some(self.inner.owner.clone()),
                lease_until,
                due_at: now,
                now,
                events: events.clone(),
            })
            .await?;
        metrics::counter!("msp_saga_started_total", "saga" => saga.name().to_owned()).increment(1);
        let mut run = Run::new(
            id,
            def,
            Arc::new(data),
            SagaState::Running,
            1,
            now,
            lease_until,
        );
        for e in &events {
            run.apply(e)?;
        }
        run.fresh = true;
        let (handle, done) = SagaHandle::new(id);
        self.spawn_driver(run, Some(done));
        Ok(handle)
    }

    /// Stores a saga without running it: whichever orchestrator sharing
    /// the store claims it first (through its recovery loop) runs it. Use
    /// this to spread sagas over several replicas.
    pub async fn submit<D>(&self, saga: &Saga<D>, data: D) -> Result<Uuid, SagaError>
    where
        D: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        if self.inner.definition(saga.name()).is_none() {
            return Err(SagaError::UnknownSaga(saga.name().to_owned()));
        }
        let id = Uuid::now_v7();
        let now = now_ms();
        self.inner
            .store
            .create(NewSaga {
                id,
                name: saga.name().to_owned(),
                data: serde_json::to_value(&data)?,
                state: SagaState::Running,
                owner: None,
                lease_until: 0,
                due_at: now,
                now,
                events: Vec::new(),
            })
            .await?;
        metrics::counter!("msp_saga_started_total", "saga" => saga.name().to_owned()).increment(1);
        Ok(id)
    }

    /// Claims due or orphaned sagas once (up to the claim batch) and
    /// drives them in background tasks; returns how many were claimed.
    pub async fn recover_once(&self) -> Result<usize, SagaError> {
        let free = self.inner.max_active.saturating_sub(self.active());
        let limit = free.min(self.inner.claim_batch);
        if limit == 0 {
            return Ok(0);
        }
        let now = now_ms();
        let records = self
            .inner
            .store
            .claim(
                &self.inner.owner,
                now,
                now.saturating_add(self.inner.lease_ms()),
                limit,
            )
            .await?;
        let claimed = records.len();
        for rec in records {
            let already = self
                .inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&rec.id);
            if already {
                // Our own driver let its lease lapse and is about to fail
                // its next write; the saga is claimed again once this new
                // lease ends.
                continue;
            }
            metrics::counter!("msp_saga_recovered_total", "saga" => rec.name.clone()).increment(1);
            match self.run_from_record(rec) {
                Ok(run) => self.spawn_driver(run, None),
                Err(e) => tracing::error!(error = %e, "cannot resume saga"),
            }
        }
        Ok(claimed)
    }

    /// Spawns the recovery loop: claims due and orphaned sagas now and then
    /// every poll interval (at once again while claims come back full).
    /// The loop stops when the returned value is dropped.
    pub fn spawn_recovery(&self) -> RecoveryLoop {
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match this.recover_once().await {
                    Ok(n) if n > 0 && n >= this.inner.claim_batch => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "saga recovery failed; will retry"),
                }
                tokio::time::sleep(this.inner.poll_interval).await;
            }
        });
        RecoveryLoop::new(task)
    }

    /// Resumes a [`Stuck`](SagaState::Stuck) saga's compensations (their
    /// retry budgets start over) in this orchestrator.
    pub async fn retry_stuck(&self, id: Uuid) -> Result<SagaHandle, SagaError> {
        let rec = self
            .inner
            .store
            .load(id)
            .await?
            .ok_or(SagaError::NotFound(id))?;
        if rec.state != SagaState::Stuck {
            return Err(SagaError::InvalidState {
                id,
                state: rec.state,
                expected: SagaState::Stuck,
            });
        }
        let mut run = self.run_from_record(rec.clone())?;
        let now = now_ms();
        let lease_until = now.saturating_add(self.inner.lease_ms());
        let event = LogEvent::StuckRetried;
        let version = self
            .inner
            .store
            .append(Transition {
                id,
                expected_version: rec.version,
                expected_owner: rec.owner.clone(),
                state: SagaState::Compensating,
                owner: Some(self.inner.owner.clone()),
                lease_until,
                due_at: now,
                now,
                first_seq: run.progress.seq + 1,
                events: vec![event.clone()],
            })
            .await
            .map_err(SagaError::from_guarded_write)?;
        run.apply(&event)?;
        run.version = version;
        run.state = SagaState::Compensating;
        run.due_at = now;
        run.lease_until = lease_until;
        let (handle, done) = SagaHandle::new(id);
        self.spawn_driver(run, Some(done));
        Ok(handle)
    }

    /// Marks a [`Stuck`](SagaState::Stuck) saga
    /// [`Resolved`](SagaState::Resolved): an operator undid the rest by
    /// hand. The note is written to the log.
    pub async fn resolve_stuck(&self, id: Uuid, note: impl Into<String>) -> Result<(), SagaError> {
        let rec = self
            .inner
            .store
            .load(id)
            .await?
            .ok_or(SagaError::NotFound(id))?;
        if rec.state != SagaState::Stuck {
            return Err(SagaError::InvalidState {
                id,
                state: rec.state,
                expected: SagaState::Stuck,
            });
        }
        let now = now_ms();
        self.inner
            .store
            .append(Transition {
                id,
                expected_version: rec.version,
                expected_owner: rec.owner.clone(),
                state: SagaState::Resolved,
                owner: None,
                lease_until: 0,
                due_at: now,
                now,
                first_seq: rec.log.last().map_or(0, |e| e.seq) + 1,
                events: vec![LogEvent::Resolved { note: note.into() }],
            })
            .await
            .map_err(SagaError::from_guarded_write)?;
        let _ = self.inner.notices.send(SagaNotice {
            id,
            saga: rec.name,
            state: SagaState::Resolved,
            detail: None,
        });
        Ok(())
    }

    /// One saga with its step log.
    pub async fn get(&self, id: Uuid) -> Result<Option<SagaRecord>, SagaError> {
        Ok(self.inner.store.load(id).await?)
    }

    /// Sagas in `state` (or all), oldest first, with their step logs.
    pub async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, SagaError> {
        Ok(self.inner.store.list(state, limit).await?)
    }

    /// Notices of sagas that completed, compensated, got stuck or were
    /// resolved.
    pub fn subscribe(&self) -> broadcast::Receiver<SagaNotice> {
        self.inner.notices.subscribe()
    }

    /// How many sagas this orchestrator is driving right now.
    pub fn active(&self) -> usize {
        *self.inner.active_count.borrow()
    }

    /// Waits until this orchestrator drives no saga.
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.active_count.subscribe();
        // The sender lives in `self.inner`, so it cannot close while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Resumes a stored saga: its registered definition and its replayed log.
    fn run_from_record(&self, rec: SagaRecord) -> Result<Run, SagaError> {
        let def = self
            .inner
            .definition(&rec.name)
            .ok_or_else(|| SagaError::UnknownSaga(rec.name.clone()))?;
        Run::replay(def, rec)
    }

    /// Drives `run` in a background task while it counts as active;
    /// reports how it stopped on `done`.
    fn spawn_driver(&self, run: Run, done: Option<Done>) {
        {
            let mut active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
            active.insert(run.id);
            self.inner.active_count.send_replace(active.len());
        }
        let guard = ActiveGuard {
            inner: self.inner.clone(),
            id: run.id,
        };
        let span = tracing::info_span!("saga", saga.id = %run.id, saga.name = %run.def.name());
        let driver = Driver {
            inner: self.inner.clone(),
            run,
        };
        tokio::spawn(
            async move {
                let result = driver.drive().await;
                if let Err(e) = &result {
                    match e {
                        SagaError::LeaseLost(_) => {
                            metrics::counter!("msp_saga_lease_lost_total").increment(1);
                            tracing::warn!(error = %e, "saga handed over");
                        }
                        e => tracing::error!(error = %e, "saga driver stopped; recovery resumes it after its lease"),
                    }
                }
                drop(guard);
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
            .instrument(span),
        );
    }
}
