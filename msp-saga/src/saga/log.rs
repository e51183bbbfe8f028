//! The persisted form of a saga: its state, its step log and the fold that
//! turns the log back into progress after a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Where a saga instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Running its steps forward.
    Running,
    /// A step failed; undoing the steps that ran, in reverse order.
    Compensating,
    /// Every step succeeded (terminal).
    Completed,
    /// Every step that ran was compensated (terminal).
    Compensated,
    /// A compensation failed more often than its cap allows; waiting for an
    /// operator ([`Orchestrator::retry_stuck`] or
    /// [`Orchestrator::resolve_stuck`]).
    ///
    /// [`Orchestrator::retry_stuck`]: crate::saga::Orchestrator::retry_stuck
    /// [`Orchestrator::resolve_stuck`]: crate::saga::Orchestrator::resolve_stuck
    Stuck,
    /// An operator resolved a stuck saga by hand (terminal).
    Resolved,
}

impl SagaState {
    /// Every state.
    pub const ALL: [SagaState; 6] = [
        SagaState::Running,
        SagaState::Compensating,
        SagaState::Completed,
        SagaState::Compensated,
        SagaState::Stuck,
        SagaState::Resolved,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Compensating => "compensating",
            SagaState::Completed => "completed",
            SagaState::Compensated => "compensated",
            SagaState::Stuck => "stuck",
            SagaState::Resolved => "resolved",
        }
    }

    /// Whether the saga will never run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SagaState::Completed | SagaState::Compensated | SagaState::Resolved
        )
    }

    /// Whether an orchestrator should be driving the saga.
    pub fn is_active(self) -> bool {
        matches!(self, SagaState::Running | SagaState::Compensating)
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`SagaState`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown saga state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for SagaState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SagaState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The call returned [`StepError::Retryable`](crate::saga::StepError::Retryable).
    Retryable,
    /// The call returned [`StepError::Permanent`](crate::saga::StepError::Permanent).
    Permanent,
    /// The call exceeded its timeout; its outcome is unknown.
    Timeout,
    /// The call panicked; its outcome is unknown.
    Panic,
}

impl FailureKind {
    /// Whether the failed call may still have had an effect.
    pub fn outcome_unknown(self) -> bool {
        matches!(self, FailureKind::Timeout | FailureKind::Panic)
    }
}

/// One entry of a saga's step log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogEvent {
    /// An attempt of the step is about to be called (committed first).
    StepStarted {
        /// The step.
        step: String,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// The step succeeded with `output`.
    StepSucceeded {
        /// The step.
        step: String,
        /// The attempt that succeeded.
        attempt: u32,
        /// The action's output.
        output: Value,
    },
    /// An attempt failed.
    StepFailed {
        /// The step.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// How it failed.
        kind: FailureKind,
        /// The error message.
        error: String,
        /// When the next attempt is due (ms since the Unix epoch); `None`
        /// when the orchestrator gave up and the saga compensates.
        retry_at: Option<i64>,
    },
    /// An attempt of the step's compensation is about to be called.
    CompensationStarted {
        /// The step being undone.
        step: String,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// The compensation succeeded.
    CompensationSucceeded {
        /// The step undone.
        step: String,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// An attempt of the compensation failed.
    CompensationFailed {
        /// The step being undone.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// How it failed.
        kind: FailureKind,
        /// The error message.
        error: String,
        /// When the next attempt is due; `None` when the cap was reached and
        /// the saga is stuck.
        retry_at: Option<i64>,
    },
    /// Every step succeeded.
    Completed,
    /// Every step that ran was compensated.
    Compensated,
    /// A compensation exhausted its retries; an operator must act.
    Stuck {
        /// The step whose compensation failed.
        step: String,
    },
    /// An operator asked to retry the compensations of a stuck saga.
    StuckRetried,
    /// An operator resolved a stuck saga by hand.
    Resolved {
        /// The operator's note.
        note: String,
    },
}

impl LogEvent {
    /// The event's kind as a short name (`step_started`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            LogEvent::StepStarted { .. } => "step_started",
            LogEvent::StepSucceeded { .. } => "step_succeeded",
            LogEvent::StepFailed { .. } => "step_failed",
            LogEvent::CompensationStarted { .. } => "compensation_started",
            LogEvent::CompensationSucceeded { .. } => "compensation_succeeded",
            LogEvent::CompensationFailed { .. } => "compensation_failed",
            LogEvent::Completed => "completed",
            LogEvent::Compensated => "compensated",
            LogEvent::Stuck { .. } => "stuck",
            LogEvent::StuckRetried => "stuck_retried",
            LogEvent::Resolved { .. } => "resolved",
        }
    }

    /// The step the event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            LogEvent::StepStarted { step, .. }
            | LogEvent::StepSucceeded { step, .. }
            | LogEvent::StepFailed { step, .. }
            | LogEvent::CompensationStarted { step, .. }
            | LogEvent::CompensationSucceeded { step, .. }
            | LogEvent::CompensationFailed { step, .. }
            | LogEvent::Stuck { step } => Some(step),
            _ => None,
        }
    }
}

/// A log event with its position and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the saga's log, from 1.
    pub seq: i64,
    /// When it was written (ms since the Unix epoch).
    pub at: i64,
    /// What happened.
    pub event: LogEvent,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = match &self.event {
            LogEvent::StepStarted { step, attempt }
            | LogEvent::CompensationStarted { step, attempt }
            | LogEvent::CompensationSucceeded { step, attempt } => {
                format!("{step} (attempt {attempt})")
            }
            LogEvent::StepSucceeded {
                step,
                attempt,
                output,
            } => format!("{step} (attempt {attempt}) -> {output}"),
            LogEvent::StepFailed {
                step,
                attempt,
                kind,
                error,
                retry_at,
            }
            | LogEvent::CompensationFailed {
                step,
                attempt,
                kind,
                error,
                retry_at,
            } => format!(
                "{step} (attempt {attempt}) {kind:?}: {error}, {}",
                if retry_at.is_some() {
                    "will retry"
                } else {
                    "giving up"
                }
            ),
            LogEvent::Stuck { step } => format!("at compensation of {step}"),
            LogEvent::Resolved { note } => note.clone(),
            LogEvent::Completed | LogEvent::Compensated | LogEvent::StuckRetried => String::new(),
        };
        let seq = format!("#{}", self.seq);
        if detail.is_empty() {
            write!(f, "{seq:<4} {}", self.event.kind())
        } else {
            write!(f, "{seq:<4} {:<23} {detail}", self.event.kind())
        }
    }
}

/// A saga instance as stored: its row and its step log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// The instance id.
    pub id: Uuid,
    /// The definition's name.
    pub name: String,
    /// The state.
    pub state: SagaState,
    /// The saga's data, as JSON.
    pub data: Value,
    /// Bumped by every write; writes name the version they expect.
    pub version: i64,
    /// The orchestrator holding the lease, if any.
    pub owner: Option<String>,
    /// When the lease ends (ms since the Unix epoch; 0 = no lease).
    pub lease_until: i64,
    /// When the saga is next due to run (ms since the Unix epoch).
    pub due_at: i64,
    /// Creation time (ms since the Unix epoch).
    pub created_at: i64,
    /// Last write time (ms since the Unix epoch).
    pub updated_at: i64,
    /// The step log, in order.
    pub log: Vec<LogEntry>,
}

/// Milliseconds since the Unix epoch, from the system clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the log says about one step.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepProgress {
    /// Attempts started.
    pub(crate) started: u32,
    /// The last started attempt has no recorded outcome.
    pub(crate) open: bool,
    /// Output, once succeeded.
    pub(crate) output: Option<Value>,
    /// Failed attempts that count against the retry policy.
    pub(crate) failures: u32,
    /// The step may have had an effect without a recorded success.
    pub(crate) unknown: bool,
    /// The orchestrator gave up on the step.
    pub(crate) gave_up: bool,
    /// Compensation attempts started.
    pub(crate) comp_started: u32,
    /// The last compensation attempt has no recorded outcome.
    pub(crate) comp_open: bool,
    /// Failed compensation attempts since the last operator retry.
    pub(crate) comp_failures: u32,
    /// The compensation succeeded.
    pub(crate) compensated: bool,
}

impl StepProgress {
    /// Whether the step may have had an effect that needs undoing.
    pub(crate) fn ran(&self) -> bool {
        self.started > 0 && (self.output.is_some() || self.unknown || self.open)
    }
}

/// The fold of a saga's log.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub(crate) steps: Vec<StepProgress>,
    pub(crate) seq: i64,
}

impl Progress {
    pub(crate) fn new(step_count: usize) -> Self {
        Progress {
            steps: vec![StepProgress::default(); step_count],
            seq: 0,
        }
    }

    /// Applies one event; `index` maps a step name to its position.
    /// Returns false if the event names a step the definition lacks.
    pub(crate) fn apply(
        &mut self,
        event: &LogEvent,
        index: impl Fn(&str) -> Option<usize>,
    ) -> bool {
        self.seq += 1;
        if let LogEvent::StuckRetried = event {
            for s in &mut self.steps {
                s.comp_failures = 0;
            }
            return true;
        }
        let Some(name) = event.step() else {
            return true;
        };
        let Some(i) = index(name) else {
            return false;
        };
        let s = &mut self.steps[i];
        match event {
            LogEvent::StepStarted { attempt, .. } => {
                s.started = s.started.max(*attempt);
                if s.open {
                    // The previous attempt never reported: it may have run.
                    s.unknown = true;
                }
                s.open = true;
            }
            LogEvent::StepSucceeded { output, .. } => {
                s.open = false;
                s.output = Some(output.clone());
            }
            LogEvent::StepFailed { kind, retry_at, .. } => {
                s.open = false;
                if *kind != FailureKind::Permanent {
                    s.failures += 1;
                }
                if kind.outcome_unknown() {
                    s.unknown = true;
                }
                if retry_at.is_none() {
                    s.gave_up = true;
                }
            }
            LogEvent::CompensationStarted { attempt, .. } => {
                s.comp_started = s.comp_started.max(*attempt);
                s.comp_open = true;
            }
            LogEvent::CompensationSucceeded { .. } => {
                s.comp_open = false;
                s.compensated = true;
            }
            LogEvent::CompensationFailed { .. } => {
                s.comp_open = false;
                s.comp_failures += 1;
            }
            _ => {}
        }
        true
    }

    /// The outputs of the steps that succeeded, by name.
    pub(crate) fn outputs(&self, names: impl Iterator<Item = String>) -> BTreeMap<String, Value> {
        names
            .zip(&self.steps)
            .filter_map(|(n, s)| s.output.clone().map(|o| (n, o)))
            .collect()
    }
}
