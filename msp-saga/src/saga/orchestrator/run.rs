//! Replaying a saga's log and planning its next move: [`Run`] folds the
//! log into per-step progress, [`plan`] reads that progress and names the
//! next step to call (or the final state to write).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::SagaError;
use crate::saga::definition::{AnyData, ErasedSaga, Phase};
use crate::saga::log::{LogEvent, Progress, SagaRecord, SagaState};

/// One saga being driven: its definition, data and the fold of its log.
pub(super) struct Run {
    pub(super) id: Uuid,
    pub(super) def: Arc<dyn ErasedSaga>,
    pub(super) data: AnyData,
    pub(super) state: SagaState,
    pub(super) version: i64,
    pub(super) due_at: i64,
    pub(super) lease_until: i64,
    pub(super) progress: Progress,
    /// The open attempt (if any) was started by this driver, so it has not
    /// been called yet.
    pub(super) fresh: bool,
}

impl Run {
    pub(super) fn new(
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

    /// Replays a stored saga's log onto its definition `def`.
    pub(super) fn replay(def: Arc<dyn ErasedSaga>, rec: SagaRecord) -> Result<Self, SagaError> {
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

    /// Folds one log event into the progress; an event naming a step the
    /// definition lacks is a [`SagaError::DefinitionMismatch`].
    pub(super) fn apply(&mut self, event: &LogEvent) -> Result<(), SagaError> {
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
pub(super) enum Plan {
    /// Call (or start) step `.0` in phase `.1`.
    Unit(usize, Phase),
    /// Nothing left: write the final state.
    Finish(SagaState),
    /// The saga is not active.
    Idle,
}

/// What the saga in `state` with `progress` needs next: in `Running`, the
/// first step without an output; in `Compensating`, the last step that may
/// have run and still has a compensation to do.
pub(super) fn plan(def: &dyn ErasedSaga, progress: &Progress, state: SagaState) -> Plan {
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

/// The event that records a final state.
pub(super) fn final_event(state: SagaState) -> LogEvent {
    match state {
        SagaState::Completed => LogEvent::Completed,
        _ => LogEvent::Compensated,
    }
}

/// A duration as whole milliseconds, saturating.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
