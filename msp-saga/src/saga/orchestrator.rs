//! The orchestrator: runs sagas, persists every transition before the effect
//! it guards, recovers sagas after a crash, and exposes the query and
//! operator APIs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::definition::{AnyData, ErasedSaga, IdempotencyKey, Phase, RawCall, Saga};
use super::log::{FailureKind, LogEvent, Progress, SagaRecord, SagaState, now_ms};
use super::store::{NewSaga, SagaStore, StoreError, Transition};

/// An orchestrator failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No saga definition with this name is registered.
    #[error("saga `{0}` is not registered with this orchestrator (OrchestratorBuilder::register)")]
    UnknownSaga(String),
    /// No saga instance has this id.
    #[error("saga {0} not found")]
    NotFound(Uuid),
    /// The operation needs the saga in another state.
    #[error("saga {id} is {state}, expected {expected}")]
    InvalidState {
        /// The saga.
        id: Uuid,
        /// Its current state.
        state: SagaState,
        /// The state the operation needs.
        expected: SagaState,
    },
    /// The saga's data could not be (de)serialized.
    #[error("saga data: {0}")]
    Data(#[from] serde_json::Error),
    /// Another orchestrator took the saga over (this one's lease ended);
    /// the other one finishes it.
    #[error("saga {0}: lease lost to another orchestrator")]
    LeaseLost(Uuid),
    /// The stored log names a step the registered definition lacks.
    #[error("saga {id}: the log does not match the registered definition: {detail}")]
    DefinitionMismatch {
        /// The saga.
        id: Uuid,
        /// What does not match.
        detail: String,
    },
    /// The task driving the saga ended without a result (it panicked or
    /// the runtime shut down).
    #[error("saga {0}: driver task ended without a result")]
    Aborted(Uuid),
}

/// Why an [`OrchestratorBuilder`] rejected its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidOrchestrator {
    /// The lease must be at least 3 ms (it is renewed every third).
    #[error("lease must be at least 3 ms")]
    LeaseTooShort,
    /// The poll interval must be positive.
    #[error("poll interval must be greater than zero")]
    ZeroPollInterval,
    /// The claim batch and the active limit must be at least 1.
    #[error("claim batch and max active must be at least 1")]
    ZeroClaimBatch,
    /// Two registered definitions share a name.
    #[error("two saga definitions are named `{0}`")]
    DuplicateSaga(String),
}

/// A saga reached a state an operator may care about (published on
/// [`Orchestrator::subscribe`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SagaNotice {
    /// The saga instance.
    pub id: Uuid,
    /// The definition's name.
    pub saga: String,
    /// The state it reached: completed, compensated, stuck or resolved.
    pub state: SagaState,
    /// For `Stuck`: the step whose compensation failed and the error.
    pub detail: Option<String>,
}

/// The result of [`Orchestrator::start`]: the saga id and a way to await
/// its final state.
#[derive(Debug)]
pub struct SagaHandle {
    id: Uuid,
    rx: oneshot::Receiver<Result<SagaState, SagaError>>,
}

impl SagaHandle {
    /// The saga instance id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Waits until this orchestrator stops driving the saga: its final
    /// state (`Completed`, `Compensated`) or `Stuck`, or an error such as
    /// [`SagaError::LeaseLost`].
    pub async fn wait(self) -> Result<SagaState, SagaError> {
        self.rx.await.unwrap_or(Err(SagaError::Aborted(self.id)))
    }
}

/// The background recovery loop from [`Orchestrator::spawn_recovery`];
/// stops when dropped.
#[derive(Debug)]
pub struct RecoveryLoop {
    task: JoinHandle<()>,
}

impl RecoveryLoop {
    /// Stops the loop (sagas already claimed keep running).
    pub fn stop(self) {}
}

impl Drop for RecoveryLoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings for an [`Orchestrator`].
#[must_use]
pub struct OrchestratorBuilder<S> {
    store: S,
    owner: Option<String>,
    lease: Duration,
    poll_interval: Duration,
    claim_batch: usize,
    max_active: usize,
    sagas: Vec<Arc<dyn ErasedSaga>>,
}

impl<S> fmt::Debug for OrchestratorBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("claim_batch", &self.claim_batch)
            .field("max_active", &self.max_active)
            .field(
                "sagas",
                &self
                    .sagas
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S: SagaStore> OrchestratorBuilder<S> {
    /// This orchestrator's owner id in leases (default: a random UUID).
    /// Must be unique among the orchestrators sharing a store.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a claim on a saga lasts without renewal (default 30 s).
    /// A crashed orchestrator's sagas are resumed by another one after at
    /// most this long; a live one renews every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often the recovery loop looks for due or orphaned sagas
    /// (default 1 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How many sagas one claim takes at most (default 64).
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.claim_batch = n;
        self
    }

    /// The most sagas this orchestrator drives at once from recovery
    /// (default 1024): claims take no more than the free slots, so busy
    /// replicas leave work to idle ones. Sagas started with
    /// [`Orchestrator::start`] always run.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n;
        self
    }

    /// Registers a definition, so sagas of that name can be started and
    /// resumed after a restart.
    pub fn register<D>(mut self, saga: &Saga<D>) -> Self
    where
        D: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.sagas.push(saga.erased());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Orchestrator<S>, InvalidOrchestrator> {
        if self.lease < Duration::from_millis(3) {
            return Err(InvalidOrchestrator::LeaseTooShort);
        }
        if self.poll_interval.is_zero() {
            return Err(InvalidOrchestrator::ZeroPollInterval);
        }
        if self.claim_batch == 0 || self.max_active == 0 {
            return Err(InvalidOrchestrator::ZeroClaimBatch);
        }
        let mut sagas = HashMap::new();
        for s in self.sagas {
            let name = s.name().to_string();
            if sagas.insert(name.clone(), s).is_some() {
                return Err(InvalidOrchestrator::DuplicateSaga(name));
            }
        }
        let (notices, _) = broadcast::channel(1024);
        let (active_tx, _) = watch::channel(0);
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                store: self.store,
                owner: self
                    .owner
                    .unwrap_or_else(|| format!("orchestrator-{}", Uuid::new_v4())),
                lease: self.lease,
                poll_interval: self.poll_interval,
                claim_batch: self.claim_batch,
                max_active: self.max_active,
                sagas: RwLock::new(sagas),
                active: Mutex::new(HashSet::new()),
                active_count: active_tx,
                notices,
            }),
        })
    }
}

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
        OrchestratorBuilder {
            store,
            owner: None,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            claim_batch: 64,
            max_active: 1024,
            sagas: Vec::new(),
        }
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
    /// [`StoreError::Duplicate`].
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
        let (tx, rx) = oneshot::channel();
        self.spawn_driver(run, Some(tx));
        Ok(SagaHandle { id, rx })
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
        RecoveryLoop { task }
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
            .map_err(|e| match e {
                StoreError::Conflict(id) => SagaError::LeaseLost(id),
                e => SagaError::Store(e),
            })?;
        run.apply(&event)?;
        run.version = version;
        run.state = SagaState::Compensating;
        run.due_at = now;
        run.lease_until = lease_until;
        let (tx, rx) = oneshot::channel();
        self.spawn_driver(run, Some(tx));
        Ok(SagaHandle { id, rx })
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
            .map_err(|e| match e {
                StoreError::Conflict(id) => SagaError::LeaseLost(id),
                e => SagaError::Store(e),
            })?;
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

    fn run_from_record(&self, rec: SagaRecord) -> Result<Run, SagaError> {
        let def = self
            .inner
            .definition(&rec.name)
            .ok_or_else(|| SagaError::UnknownSaga(rec.name.clone()))?;
        let data = def.decode(&rec.data)?;
        let mut run = Run::new(
            rec.id,
            def,
            data,
            rec.state,
            rec.version,
            rec.due_at,
            rec.lease_until,
        );
        for entry in &rec.log {
            run.apply(&entry.event)?;
        }
        Ok(run)
    }

    fn spawn_driver(&self, run: Run, done: Option<oneshot::Sender<Result<SagaState, SagaError>>>) {
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

/// One saga being driven: its definition, data and the fold of its log.
struct Run {
    id: Uuid,
    def: Arc<dyn ErasedSaga>,
    data: AnyData,
    state: SagaState,
    version: i64,
    due_at: i64,
    lease_until: i64,
    progress: Progress,
    /// The open attempt (if any) was started by this driver, so it has not
    /// been called yet.
    fresh: bool,
}

impl Run {
    fn new(
        id: Uuid,
        def: Arc<dyn ErasedSaga>,
        data: AnyData,
        state: SagaState,
        version: i64,
        due_at: i64,
        lease_until: i64,
    ) -> Self {
        let progress = Progress::new(def.steps().len());
        Run {
            id,
            def,
            data,
            state,
            version,
            due_at,
            lease_until,
            progress,
            fresh: false,
        }
    }

    fn apply(&mut self, event: &LogEvent) -> Result<(), SagaError> {
        let steps = self.def.clone();
        let index = |n: &str| steps.steps().iter().position(|s| &*s.name == n);
        if self.progress.apply(event, index) {
            Ok(())
        } else {
            Err(SagaError::DefinitionMismatch {
                id: self.id,
                detail: format!("unknown step in {event:?}"),
            })
        }
    }
}

/// The next thing a saga needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Call (or start) step `.0` in phase `.1`.
    Unit(usize, Phase),
    /// Nothing left: write the final state.
    Finish(SagaState),
    /// The saga is not active.
    Idle,
}

fn plan(def: &dyn ErasedSaga, progress: &Progress, state: SagaState) -> Plan {
    match state {
        SagaState::Running => match progress.steps.iter().position(|s| s.output.is_none()) {
            Some(i) => Plan::Unit(i, Phase::Action),
            None => Plan::Finish(SagaState::Completed),
        },
        SagaState::Compensating => {
            let metas = def.steps();
            match (0..progress.steps.len()).rev().find(|&i| {
                let s = &progress.steps[i];
                s.ran() && metas[i].has_compensation && !s.compensated
            }) {
                Some(i) => Plan::Unit(i, Phase::Compensation),
                None => Plan::Finish(SagaState::Compensated),
            }
        }
        _ => Plan::Idle,
    }
}

enum Outcome {
    Ok(Value),
    Failed(FailureKind, String),
}

struct Driver<S> {
    inner: Arc<Inner<S>>,
    run: Run,
}

impl<S: SagaStore> Driver<S> {
    async fn drive(mut self) -> Result<SagaState, SagaError> {
        loop {
            let (step, phase) = match plan(&*self.run.def, &self.run.progress, self.run.state) {
                Plan::Unit(step, phase) => (step, phase),
                Plan::Finish(state) => {
                    // Only after a resume: the final event is normally
                    // written together with the last outcome.
                    let due = self.run.due_at;
                    self.commit(vec![final_event(state)], state, due).await?;
                    continue;
                }
                Plan::Idle => return Ok(self.run.state),
            };
            let p = &self.run.progress.steps[step];
            let (open, started) = match phase {
                Phase::Action => (p.open, p.started),
                Phase::Compensation => (p.comp_open, p.comp_started),
            };
            if !(open && self.run.fresh) {
                // Either a retry is pending, or the open attempt comes from
                // the log of a crashed run: commit a new start first.
                if started > 0 && !open {
                    let wait = self.run.due_at.saturating_sub(now_ms());
                    if wait > 0 {
                        let sleep = tokio::time::sleep(Duration::from_millis(wait as u64));
                        self.with_lease(sleep).await?;
                    }
                }
                let name = self.run.def.steps()[step].name.to_string();
                let event = match phase {
                    Phase::Action => LogEvent::StepStarted {
                        step: name,
                        attempt: started + 1,
                    },
                    Phase::Compensation => LogEvent::CompensationStarted {
                        step: name,
                        attempt: started + 1,
                    },
                };
                let state = self.run.state;
                self.commit(vec![event], state, now_ms()).await?;
                self.run.fresh = true;
                continue;
            }
            self.run.fresh = false;
            let outcome = self.call(step, phase, started).await?;
            let (events, state, due_at) = self.after(step, phase, started, outcome);
            self.commit_with_next(events, state, due_at).await?;
        }
    }

    /// Calls the action or compensation once, bounded by its timeout,
    /// renewing the lease meanwhile.
    async fn call(
        &mut self,
        step: usize,
        phase: Phase,
        attempt: u32,
    ) -> Result<Outcome, SagaError> {
        let meta = self.run.def.steps()[step].clone();
        let saga_name = self.run.def.name().to_string();
        let Some(key) = IdempotencyKey::new(self.run.id, &meta.name, phase == Phase::Compensation)
        else {
            return Ok(Outcome::Failed(
                FailureKind::Permanent,
                format!("step name `{}` cannot form an idempotency key", meta.name),
            ));
        };
        let names = self.run.def.steps().iter().map(|m| m.name.to_string());
        let outputs = Arc::new(self.run.progress.outputs(names));
        let fut = self.run.def.call(RawCall {
            saga_id: self.run.id,
            step,
            phase,
            attempt,
            key,
            data: self.run.data.clone(),
            outputs,
        });
        let timeout = match phase {
            Phase::Action => meta.timeout,
            Phase::Compensation => meta.compensation_timeout,
        };
        let span = tracing::info_span!("saga.step", step = %meta.name, phase = ?phase, attempt);
        let started = tokio::time::Instant::now();
        let guarded = AssertUnwindSafe(fut).catch_unwind();
        let bounded = async move {
            match timeout {
                Some(d) => tokio::time::timeout(d, guarded).await.ok(),
                None => Some(guarded.await),
            }
        }
        .instrument(span.clone());
        let result = self.with_lease(bounded).await?;
        let outcome = match result {
            Some(Ok(Ok(v))) => Outcome::Ok(v),
            Some(Ok(Err(e))) => {
                let kind = if e.is_retryable() {
                    FailureKind::Retryable
                } else {
                    FailureKind::Permanent
                };
                Outcome::Failed(kind, e.message().to_owned())
            }
            Some(Err(_panic)) => {
                Outcome::Failed(FailureKind::Panic, "the call panicked".to_owned())
            }
            None => Outcome::Failed(
                FailureKind::Timeout,
                format!("timed out after {:?}", timeout.unwrap_or_default()),
            ),
        };
        let label = match &outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(FailureKind::Retryable, _) => "retryable",
            Outcome::Failed(FailureKind::Permanent, _) => "permanent",
            Outcome::Failed(FailureKind::Timeout, _) => "timeout",
            Outcome::Failed(FailureKind::Panic, _) => "panic",
        };
        let phase_label = match phase {
            Phase::Action => "action",
            Phase::Compensation => "compensation",
        };
        metrics::histogram!(
            "msp_saga_step_duration_seconds",
            "saga" => saga_name,
            "step" => meta.name.to_string(),
            "phase" => phase_label,
            "outcome" => label,
        )
        .record(started.elapsed().as_secs_f64());
        span.in_scope(|| match &outcome {
            Outcome::Ok(_) => tracing::debug!("step succeeded"),
            Outcome::Failed(kind, e) => tracing::info!(?kind, error = %e, "step failed"),
        });
        Ok(outcome)
    }

    /// The events, state and due time that record `outcome`.
    fn after(
        &self,
        step: usize,
        phase: Phase,
        attempt: u32,
        outcome: Outcome,
    ) -> (Vec<LogEvent>, SagaState, i64) {
        let meta = &self.run.def.steps()[step];
        let name = meta.name.to_string();
        let now = now_ms();
        let p = &self.run.progress.steps[step];
        let seed = self.run.id.as_u64_pair().0 ^ (step as u64).rotate_left(32);
        let saga_name = self.run.def.name().to_string();
        match (phase, outcome) {
            (Phase::Action, Outcome::Ok(output)) => (
                vec![LogEvent::StepSucceeded {
                    step: name,
                    attempt,
                    output,
                }],
                SagaState::Running,
                now,
            ),
            (Phase::Action, Outcome::Failed(kind, error)) => {
                let delay = match (kind, &meta.retry) {
                    (FailureKind::Retryable | FailureKind::Timeout, Some(policy)) => {
                        policy.iter_seeded(seed).nth(p.failures as usize)
                    }
                    _ => None,
                };
                match delay {
                    Some(d) => {
                        metrics::counter!("msp_saga_step_retries_total", "saga" => saga_name, "step" => name.clone(), "phase" => "action")
                            .increment(1);
                        let due = now.saturating_add(millis(d));
                        (
                            vec![LogEvent::StepFailed {
                                step: name,
                                attempt,
                                kind,
                                error,
                                retry_at: Some(due),
                            }],
                            SagaState::Running,
                            due,
                        )
                    }
                    None => (
                        vec![LogEvent::StepFailed {
                            step: name,
                            attempt,
                            kind,
                            error,
                            retry_at: None,
                        }],
                        SagaState::Compensating,
                        now,
                    ),
                }
            }
            (Phase::Compensation, Outcome::Ok(_)) => (
                vec![LogEvent::CompensationSucceeded {
                    step: name,
                    attempt,
                }],
                SagaState::Compensating,
                now,
            ),
            (Phase::Compensation, Outcome::Failed(kind, error)) => {
                let delay = match kind {
                    FailureKind::Permanent => None,
                    _ => meta
                        .compensation_retry
                        .iter_seeded(seed ^ 0x5a5a)
                        .nth(p.comp_failures as usize),
                };
                match delay {
                    Some(d) => {
                        metrics::counter!("msp_saga_step_retries_total", "saga" => saga_name, "step" => name.clone(), "phase" => "compensation")
                            .increment(1);
                        let due = now.saturating_add(millis(d));
                        (
                            vec![LogEvent::CompensationFailed {
                                step: name,
                                attempt,
                                kind,
                                error,
                                retry_at: Some(due),
                            }],
                            SagaState::Compensating,
                            due,
                        )
                    }
                    None => (
                        vec![
                            LogEvent::CompensationFailed {
                                step: name.clone(),
                                attempt,
                                kind,
                                error,
                                retry_at: None,
                            },
                            LogEvent::Stuck { step: name },
                        ],
                        SagaState::Stuck,
                        now,
                    ),
                }
            }
        }
    }

    /// Commits `events` plus, when the saga can go on at once, the start of
    /// the next step (or compensation) or the final event, in one write.
    async fn commit_with_next(
        &mut self,
        mut events: Vec<LogEvent>,
        mut state: SagaState,
        due_at: i64,
    ) -> Result<(), SagaError> {
        let mut fresh = false;
        if state.is_active() {
            let mut tentative = self.run.progress.clone();
            let def = self.run.def.clone();
            for e in &events {
                tentative.apply(e, |n| def.steps().iter().position(|s| &*s.name == n));
            }
            match plan(&*def, &tentative, state) {
                Plan::Unit(i, phase) => {
                    let s = &tentative.steps[i];
                    let name = def.steps()[i].name.to_string();
                    match phase {
                        Phase::Action if s.started == 0 => {
                            events.push(LogEvent::StepStarted {
                                step: name,
                                attempt: 1,
                            });
                            fresh = true;
                        }
                        Phase::Compensation if s.comp_started == 0 => {
                            events.push(LogEvent::CompensationStarted {
                                step: name,
                                attempt: 1,
                            });
                            fresh = true;
                        }
                        _ => {}
                    }
                }
                Plan::Finish(final_state) => {
                    events.push(final_event(final_state));
                    state = final_state;
                }
                Plan::Idle => {}
            }
        }
        self.commit(events, state, due_at).await?;
        self.run.fresh = fresh;
        Ok(())
    }

    /// One guarded write. Active states keep (and extend) the lease;
    /// other states release it.
    async fn commit(
        &mut self,
        events: Vec<LogEvent>,
        state: SagaState,
        due_at: i64,
    ) -> Result<(), SagaError> {
        let now = now_ms();
        let (owner, lease_until) = if state.is_active() {
            (
                Some(self.inner.owner.clone()),
                now.saturating_add(self.inner.lease_ms()),
            )
        } else {
            (None, 0)
        };
        let transition = Transition {
            id: self.run.id,
            expected_version: self.run.version,
            expected_owner: Some(self.inner.owner.clone()),
            state,
            owner,
            lease_until,
            due_at,
            now,
            first_seq: self.run.progress.seq + 1,
            events: events.clone(),
        };
        let version = self
            .inner
            .store
            .append(transition)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(id) => SagaError::LeaseLost(id),
                e => SagaError::Store(e),
            })?;
        self.run.version = version;
        self.run.due_at = due_at;
        self.run.lease_until = lease_until;
        for e in &events {
            self.run.apply(e)?;
        }
        let previous = self.run.state;
        self.run.state = state;
        if previous != state {
            self.on_state_change(state, &events);
        }
        Ok(())
    }

    fn on_state_change(&self, state: SagaState, events: &[LogEvent]) {
        let saga = self.run.def.name().to_string();
        let detail = match state {
            SagaState::Completed => {
                metrics::counter!("msp_saga_completed_total", "saga" => saga.clone()).increment(1);
                None
            }
            SagaState::Compensated => {
                metrics::counter!("msp_saga_compensated_total", "saga" => saga.clone())
                    .increment(1);
                None
            }
            SagaState::Stuck => {
                metrics::counter!("msp_saga_stuck_total", "saga" => saga.clone()).increment(1);
                let detail = events.iter().find_map(|e| match e {
                    LogEvent::CompensationFailed { step, error, .. } => {
                        Some(format!("compensation of `{step}` failed: {error}"))
                    }
                    _ => None,
                });
                tracing::error!(
                    detail = detail.as_deref().unwrap_or(""),
                    "saga stuck; an operator must retry or resolve it"
                );
                detail
            }
            SagaState::Compensating => {
                tracing::info!("saga failed; compensating");
                return;
            }
            _ => return,
        };
        let _ = self.inner.notices.send(SagaNotice {
            id: self.run.id,
            saga,
            state,
            detail,
        });
    }

    /// Runs `fut`, renewing the lease every third of its length; gives up
    /// (dropping `fut`) if the lease is lost, or when the lease we hold
    /// runs out while renewals keep failing: from then on another
    /// orchestrator may claim the saga, so this one must not be running
    /// its step any more.
    async fn with_lease<F: Future>(&mut self, fut: F) -> Result<F::Output, SagaError> {
        let every = self.inner.lease / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fut = std::pin::pin!(fut);
        // The lease's end on the runtime's clock, moved only by a
        // successful renewal.
        let left = self.run.lease_until.saturating_sub(now_ms()).max(0);
        let mut expiry = tokio::time::Instant::now() + Duration::from_millis(left as u64);
        loop {
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = tokio::time::sleep_until(expiry) => {
                    return Err(SagaError::LeaseLost(self.run.id));
                }
                _ = tick.tick() => {
                    let asked = tokio::time::Instant::now();
                    let now = now_ms();
                    let until = now.saturating_add(self.inner.lease_ms());
                    // A renewal that hangs (database unreachable) must not
                    // keep the call alive past the lease either.
                    let renew = self.inner.store.renew(self.run.id, &self.inner.owner, self.run.version, until);
                    let Ok(renewed) = tokio::time::timeout_at(expiry, renew).await else {
                        return Err(SagaError::LeaseLost(self.run.id));
                    };
                    match renewed {
                        Ok(()) => {
                            self.run.lease_until = until;
                            expiry = asked + self.inner.lease;
                        }
                        Err(StoreError::Conflict(id)) => return Err(SagaError::LeaseLost(id)),
                        Err(e) => {
                            if tokio::time::Instant::now() >= expiry || now_ms() >= self.run.lease_until {
                                return Err(SagaError::LeaseLost(self.run.id));
                            }
                            tracing::warn!(error = %e, "lease renewal failed; retrying");
                        }
                    }
                }
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn final_event(state: SagaState) -> LogEvent {
    match state {
        SagaState::Completed => LogEvent::Completed,
        _ => LogEvent::Compensated,
    }
}
