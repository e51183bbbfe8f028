//! What the orchestrator hands out: a [`SagaHandle`] per started saga, the
//! [`RecoveryLoop`] guard and the [`SagaNotice`]s it broadcasts.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::SagaError;
use crate::saga::log::SagaState;

/// A saga reached a state an operator may care about (published on
/// [`Orchestrator::subscribe`](super::Orchestrator::subscribe)).
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

/// Where a driver reports how it stopped, read by [`SagaHandle::wait`].
pub(super) type Done = oneshot::Sender<Result<SagaState, SagaError>>;

/// The result of [`Orchestrator::start`](super::Orchestrator::start): the
/// saga id and a way to await its final state.
#[derive(Debug)]
pub struct SagaHandle {
    id: Uuid,
    rx: oneshot::Receiver<Result<SagaState, SagaError>>,
}

impl SagaHandle {
    /// A handle on saga `id` and the sender its driver reports to.
    pub(super) fn new(id: Uuid) -> (Self, Done) {
        let (tx, rx) = oneshot::channel();
        (SagaHandle { id, rx }, tx)
    }

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

/// The background recovery loop from
/// [`Orchestrator::spawn_recovery`](super::Orchestrator::spawn_recovery);
/// stops when dropped.
#[derive(Debug)]
pub struct RecoveryLoop {
    task: JoinHandle<()>,
}

impl RecoveryLoop {
    /// Guards the spawned loop `task`.
    pub(super) fn new(task: JoinHandle<()>) -> Self {
        RecoveryLoop { task }
    }

    /// Stops the loop (sagas already claimed keep running).
    pub fn stop(self) {}
}

impl Drop for RecoveryLoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}
