//! What can go wrong running sagas ([`SagaError`]) and configuring an
//! orchestrator ([`OrchestratorConfigError`]).

use uuid::Uuid;

use crate::saga::log::SagaState;
use crate::saga::store::StoreError;

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

/// Why an [`OrchestratorBuilder`](super::OrchestratorBuilder) rejected its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorConfigError {
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

impl SagaError {
    /// A failed guarded write: a version or owner conflict means another
    /// orchestrator holds the saga now.
    pub(super) fn from_guarded_write(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => SagaError::LeaseLost(id),
            e => SagaError::Store(e),
        }
    }
}
