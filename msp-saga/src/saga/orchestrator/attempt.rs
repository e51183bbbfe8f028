//! One attempt of a step: calling its action or compensation once
//! ([`Driver::call`]) and turning the result into the log events, state
//! and due time that record it ([`Driver::after`]).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use tracing::Instrument;

use super::SagaError;
use super::driver::Driver;
use super::run::millis;
use crate::saga::definition::{IdempotencyKey, Phase, RawCall, StepError, StepMeta};
use crate::saga::fence::LeaseFence;
use crate::saga::log::{FailureKind, LogEvent, SagaState, now_ms};
use crate::saga::store::SagaStore;

/// What one call of an action or compensation produced.
pub(super) enum AttemptResult {
    /// It returned this output (`null` for a compensation).
    Succeeded(Value),
    /// It failed, panicked or timed out, with a message for the log.
    Failed(FailureKind, String),
}

impl AttemptResult {
    /// Classifies what [`guarded`] returned: `None` is a timeout after
    /// `timeout`, a caught panic is [`FailureKind::Panic`].
    fn classify(
        result: Option<Result<Result<Value, StepError>, Box<dyn Any + Send>>>,
        timeout: Option<Duration>,
    ) -> Self {
        match result {
            Some(Ok(Ok(v))) => AttemptResult::Succeeded(v),
            Some(Ok(Err(e))) => {
                let kind = if e.is_retryable() {
                    FailureKind::Retryable
                } else {
                    FailureKind::Permanent
                };
                AttemptResult::Failed(kind, e.message().to_owned())
            }
            Some(Err(_panic)) => {
                AttemptResult::Failed(FailureKind::Panic, "the call panicked".to_owned())
            }
            None => AttemptResult::Failed(
                FailureKind::Timeout,
                format!("timed out after {:?}", timeout.unwrap_or_default()),
            ),
        }
    }

    /// The `outcome` label of `msp_saga_step_duration_seconds`.
    fn label(&self) -> &'static str {
        match self {
            AttemptResult::Succeeded(_) => "ok",
            AttemptResult::Failed(FailureKind::Retryable, _) => "retryable",
            AttemptResult::Failed(FailureKind::Permanent, _) => "permanent",
            AttemptResult::Failed(FailureKind::Timeout, _) => "timeout",
            AttemptResult::Failed(FailureKind::Panic, _) => "panic",
        }
    }
}

/// Runs `fut` catching a panic, bounded by `timeout`; `None` when the
/// timeout struck first.
async fn guarded<F: Future>(
    fut: F,
    timeout: Option<Duration>,
) -> Option<Result<F::Output, Box<dyn Any + Send>>> {
    let guarded = AssertUnwindSafe(fut).catch_unwind();
    match timeout {
        Some(d) => tokio::time::timeout(d, guarded).await.ok(),
        None => Some(guarded.await),
    }
}

/// The `phase` label of the step metrics.
fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Action => "action",
        Phase::Compensation => "compensation",
    }
}

impl<S: SagaStore> Driver<S> {
    /// Calls the action or compensation once, bounded by its timeout,
    /// renewing the lease meanwhile.
    pub(super) async fn call(
        &mut self,
        step: usize,
        phase: Phase,
        attempt: u32,
    ) -> Result<AttemptResult, SagaError> {
        let meta = self.run.def.steps()[step].clone();
        let Some(call) = self.raw_call(step, phase, attempt, &meta) else {
            return Ok(AttemptResult::Failed(
                FailureKind::Permanent,
                format!("step name `{}` cannot form an idempotency key", meta.name),
            ));
        };
        let fut = self.run.def.call(call);
        let timeout = match phase {
            Phase::Action => meta.timeout,
            Phase::Compensation => meta.compensation_timeout,
        };
        let span = tracing::info_span!("saga.step", step = %meta.name, phase = ?phase, attempt);
        let started = tokio::time::Instant::now();
        let bounded = guarded(fut, timeout).instrument(span.clone());
        let result = AttemptResult::classify(self.with_lease(bounded).await?, timeout);
        self.observe(&meta, phase, &result, started.elapsed());
        span.in_scope(|| match &result {
            AttemptResult::Succeeded(_) => tracing::debug!("step succeeded"),
            AttemptResult::Failed(kind, e) => tracing::info!(?kind, error = %e, "step failed"),
        });
        Ok(result)
    }

    /// What the definition needs to call `step`: the stable idempotency
    /// key, the data and the outputs so far. `None` when the step's name
    /// cannot form a key.
    fn raw_call(
        &self,
        step: usize,
        phase: Phase,
        attempt: u32,
        meta: &StepMeta,
    ) -> Option<RawCall> {
        let key = IdempotencyKey::new(self.run.id, &meta.name, phase == Phase::Compensation)?;
        let names = self.run.def.steps().iter().map(|m| m.name.to_string());
        let outputs = Arc::new(self.run.progress.outputs(names));
        Some(RawCall {
            saga_id: self.run.id,
            step,
            phase,
            attempt,
            key,
            data: self.run.data.clone(),
            outputs,
            fence: LeaseFence {
                saga_id: self.run.id,
                owner: Arc::from(self.inner.owner.as_str()),
                version: self.run.version,
                lease: self.inner.lease,
            },
        })
    }

    /// Records the call's duration in `msp_saga_step_duration_seconds`.
    fn observe(&self, meta: &StepMeta, phase: Phase, result: &AttemptResult, took: Duration) {
        metrics::histogram!(
            "msp_saga_step_duration_seconds",
            "saga" => self.run.def.name().to_string(),
            "step" => meta.name.to_string(),
            "phase" => phase_label(phase),
            "outcome" => result.label(),
        )
        .record(took.as_secs_f64());
    }

    /// The events, state and due time that record `result`.
    pub(super) fn after(
        &self,
        step: usize,
        phase: Phase,
        attempt: u32,
        result: AttemptResult,
    ) -> (Vec<LogEvent>, SagaState, i64) {
        let name = self.run.def.steps()[step].name.to_string();
        let now = now_ms();
        match (phase, result) {
            (Phase::Action, AttemptResult::Succeeded(output)) => (
                vec![LogEvent::StepSucceeded {
                    step: name,
                    attempt,
                    output,
                }],
                SagaState::Running,
                now,
            ),
            (Phase::Action, AttemptResult::Failed(kind, error)) => {
                let retry_at = self.retry_at(step, phase, kind, now);
                let event = LogEvent::StepFailed {
                    step: name,
                    attempt,
                    kind,
                    error,
                    retry_at,
                };
                match retry_at {
                    // Retry the action when it is due.
                    Some(due) => (vec![event], SagaState::Running, due),
                    // Give up: compensate.
                    None => (vec![event], SagaState::Compensating, now),
                }
            }
            (Phase::Compensation, AttemptResult::Succeeded(_)) => (
                vec![LogEvent::CompensationSucceeded {
                    step: name,
                    attempt,
                }],
                SagaState::Compensating,
                now,
            ),
            (Phase::Compensation, AttemptResult::Failed(kind, error)) => {
                let retry_at = self.retry_at(step, phase, kind, now);
                let event = LogEvent::CompensationFailed {
                    step: name.clone(),
                    attempt,
                    kind,
                    error,
                    retry_at,
                };
                match retry_at {
                    // Retry the compensation when it is due.
                    Some(due) => (vec![event], SagaState::Compensating, due),
                    // The compensation cannot go on: an operator must act.
                    None => (
                        vec![event, LogEvent::Stuck { step: name }],
                        SagaState::Stuck,
                        now,
                    ),
                }
            }
        }
    }

    /// When to retry `step` in `phase` after a failure of `kind` (counted
    /// in `msp_saga_step_retries_total`), or `None` to stop retrying.
    fn retry_at(&self, step: usize, phase: Phase, kind: FailureKind, now: i64) -> Option<i64> {
        let delay = self.retry_delay(step, phase, kind)?;
        let meta = &self.run.def.steps()[step];
        metrics::counter!(
            "msp_saga_step_retries_total",
            "saga" => self.run.def.name().to_string(),
            "step" => meta.name.to_string(),
            "phase" => phase_label(phase),
        )
        .increment(1);
        Some(now.saturating_add(millis(delay)))
    }

    /// The delay before the next attempt, from the step's retry policy
    /// (actions: only retryable failures and timeouts, only with a policy)
    /// or its compensation policy (every failure but a permanent one).
    /// Seeded by saga and step, so a resumed saga waits the same jitter.
    fn retry_delay(&self, step: usize, phase: Phase, kind: FailureKind) -> Option<Duration> {
        let meta = &self.run.def.steps()[step];
        let p = &self.run.progress.steps[step];
        let seed = self.run.id.as_u64_pair().0 ^ (step as u64).rotate_left(32);
        match phase {
            Phase::Action => match (kind, &meta.retry) {
                (FailureKind::Retryable | FailureKind::Timeout, Some(policy)) => {
                    policy.iter_seeded(seed).nth(p.failures as usize)
                }
                _ => None,
            },
            Phase::Compensation => match kind {
                FailureKind::Permanent => None,
                _ => meta
                    .compensation_retry
                    .iter_seeded(seed ^ 0x5a5a)
                    .nth(p.comp_failures as usize),
            },
        }
    }
}
