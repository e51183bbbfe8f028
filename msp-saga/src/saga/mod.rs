//! Durable sagas: a chain of steps with compensations, persisted in a
//! [`SagaStore`] so a crash at any point loses no saga and
//! runs no compensation for a step that never ran.
//!
//! - Define a saga with [`Saga::builder`]: named steps, each an async action
//!   with an optional compensation, a retry policy
//!   ([`msp_core::backoff::Backoff`]) and a timeout. Actions return a
//!   serializable output (readable by later steps and by compensations) or
//!   a [`StepError`] that is [`Retryable`](StepError::Retryable) or
//!   [`Permanent`](StepError::Permanent).
//! - Run it with an [`Orchestrator`] on a store: [`MemorySagaStore`]
//!   (tests), `SqliteSagaStore` (feature `sqlite`, the embedded
//!   default) or `PostgresSagaStore` (feature `postgres`, several
//!   replicas), all in [`store`].
//!
//! # Guarantees
//!
//! - **Write-ahead.** `StepStarted` is committed before an action is
//!   called; a step's success is committed together with the next step's
//!   start (one transaction, guarded by the saga's version and owner). A
//!   saga of *n* steps costs *n + 1* commits when nothing fails.
//! - **Compensation.** A permanent failure, exhausted retries or a timeout
//!   compensates, in reverse order, every step that succeeded **or whose
//!   outcome is unknown** (it timed out, or the process died while it ran).
//!   A step that was never started is never compensated. Compensations are
//!   retried with their own backoff until they succeed; with a cap, the saga
//!   becomes [`Stuck`](SagaState::Stuck) (metric, [`SagaNotice`] event) and
//!   waits for [`Orchestrator::retry_stuck`] or
//!   [`Orchestrator::resolve_stuck`].
//! - **Idempotency.** Each call carries a stable key, `{saga_id}:{step}`
//!   (`{saga_id}:{step}:compensate` for compensations), the same for every
//!   attempt and after a crash. Send it downstream with
//!   [`IdempotencyKeyExt`] (`Idempotency-Key` header). Actions may run more
//!   than once; the key is what makes the effect happen once.
//!   **Compensations must be idempotent too, and must accept a step that
//!   had no effect.**
//! - **Recovery.** [`Orchestrator::spawn_recovery`] claims sagas whose
//!   lease expired (their orchestrator died) or whose retry is due
//!   (`due_at` is persisted) and resumes them from the log. On PostgreSQL
//!   claims use `FOR UPDATE SKIP LOCKED`, and every write checks version and
//!   owner, so two orchestrators never drive one saga at once. Leases are
//!   renewed while a step runs; an orchestrator that cannot renew abandons
//!   the call before its lease ends. Lease times use the system clocks of
//!   the orchestrators, which must agree to well within the lease length.
//!
//! # Observability
//!
//! A `saga` tracing span (`saga.id`, `saga.name`) around each run and a
//! `saga.step` span per call. Metrics: `msp_saga_started_total`,
//! `msp_saga_completed_total`, `msp_saga_compensated_total`,
//! `msp_saga_stuck_total`, `msp_saga_recovered_total`,
//! `msp_saga_lease_lost_total` (label `saga`),
//! `msp_saga_step_retries_total` and the histogram
//! `msp_saga_step_duration_seconds` (labels `saga`, `step`, `phase`,
//! `outcome`). [`Orchestrator::list`] and [`Orchestrator::get`] return
//! sagas by state with their step logs.
//!
//! # Example
//!
//! ```
//! use msp_saga::saga::store::MemorySagaStore;
//! use msp_saga::saga::{IdempotencyKeyExt, Orchestrator, Saga, SagaState, StepError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: u32, in_stock: bool }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let saga = Saga::<Order>::builder("place-order")
//!     .step("payment", |ctx| async move {
//!         let _request = http::Request::post("http://payments/charges")
//!             .idempotency_key(ctx.idempotency_key())
//!             .body(())
//!             .map_err(StepError::permanent)?;
//!         Ok::<_, StepError>(format!("charge-{}", ctx.data().id))
//!     })
//!     .compensate(|ctx| async move {
//!         let charge: Option<String> = ctx.own_output()?;
//!         println!("refund {charge:?}");
//!         Ok(())
//!     })
//!     .step("inventory", |ctx| async move {
//!         if ctx.data().in_stock { Ok(()) } else { Err(StepError::permanent("out of stock")) }
//!     })
//!     .build()?;
//!
//! let orchestrator = Orchestrator::builder(MemorySagaStore::new()).register(&saga).build()?;
//! let _recovery = orchestrator.spawn_recovery();
//! let ok = orchestrator.start(&saga, Order { id: 1, in_stock: true }).await?;
//! assert_eq!(ok.wait().await?, SagaState::Completed);
//! let refunded = orchestrator.start(&saga, Order { id: 2, in_stock: false }).await?;
//! assert_eq!(refunded.wait().await?, SagaState::Compensated);
//! # Ok(()) }
//! ```

mod definition;
mod fence;
mod http;
mod log;
mod orchestrator;
pub mod store;

pub use self::definition::{
    IdempotencyKey, InvalidSaga, Phase, Saga, SagaBuilder, StepBuilder, StepContext, StepError,
};
pub use self::fence::LeaseFence;
pub use self::http::{IDEMPOTENCY_KEY, IdempotencyKeyExt};
pub use self::log::{FailureKind, LogEntry, LogEvent, SagaRecord, SagaState, UnknownState};
pub use self::orchestrator::{
    Orchestrator, OrchestratorBuilder, OrchestratorConfigError, RecoveryLoop, SagaError,
    SagaHandle, SagaNotice,
};
#[cfg(feature = "postgres")]
pub use self::store::PostgresSagaStore;
#[cfg(feature = "sqlite")]
pub use self::store::SqliteSagaStore;
pub use self::store::{MemorySagaStore, SagaStore};
