//! The [`Driver`]: drives one saga to its end, one attempt at a time,
//! writing every transition to the store before the effect it guards and
//! holding the saga's lease meanwhile.
//!
//! How one attempt is called and its result recorded lives in
//! [`attempt`](super::attempt).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::run::{Plan, Run, final_event, plan};
use super::{Inner, SagaError, SagaNotice};
use crate::saga::definition::Phase;
use crate::saga::log::{LogEvent, SagaState, now_ms};
use crate::saga::store::{SagaStore, StoreError, Transition};

/// Drives one saga in a background task (see `Orchestrator::spawn_driver`).
pub(super) struct Driver<S> {
    pub(super) inner: Arc<Inner<S>>,
    pub(super) run: Run,
}

impl<S: SagaStore> Driver<S> {
    /// Runs the saga until it is no longer active (or this orchestrator
    /// loses it): plan, start, call, record, repeat.
    pub(super) async fn drive(mut self) -> Result<SagaState, SagaError> {
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
                self.start_attempt(step, phase, started, open).await?;
                continue;
            }
            self.run.fresh = false;
            let result = self.call(step, phase, started).await?;
            let (events, state, due_at) = self.after(step, phase, started, result);
            self.commit_with_next(events, state, due_at).await?;
        }
    }

    /// Commits the start of attempt `started + 1` of `step`, first waiting
    /// (under the lease) for a pending retry's due time. Needed when a
    /// retry is pending, or when the open attempt comes from the log of a
    /// crashed run.
    async fn start_attempt(
        &mut self,
        step: usize,
        phase: Phase,
        started: u32,
        open: bool,
    ) -> Result<(), SagaError> {
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
        Ok(())
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
            .map_err(SagaError::from_guarded_write)?;
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

    /// Counts, logs and announces (on the notice channel) a new state.
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
    pub(super) async fn with_lease<F: Future>(&mut self, fut: F) -> Result<F::Output, SagaError> {
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
