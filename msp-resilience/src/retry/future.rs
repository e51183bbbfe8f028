//! Response future of [`Retry`](super::Retry).

use super::error::BudgetExhausted;
use super::policy::{Action, Policy, ShouldRetry};
use super::service::Settings;
use crate::timeout::Elapsed;
use msp_core::BoxError;
use msp_core::backoff::BackoffIter;
use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    /// An optional timer (the per-try timeout).
    #[project = TimerProj]
    #[derive(Debug)]
    pub(crate) enum Timer {
        Armed { #[pin] sleep: Sleep },
        Off,
    }
}

impl Timer {
    pub(crate) fn until(deadline: Option<Instant>) -> Self {
        match deadline {
            Some(d) => Timer::Armed {
                sleep: tokio::time::sleep_until(d),
            },
            None => Timer::Off,
        }
    }

    pub(crate) fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        match self.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx).is_ready(),
            TimerProj::Off => false,
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] fut: F, #[pin] timer: Timer },
        Waiting { #[pin] sleep: Sleep },
        Ready,
    }
}

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, P, Req>
    where
        S: Service<<P as Policy<Req>>::Request>,
        P: Policy<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        policy: P,
        replay: Option<P::Replay>,
        next: Option<P::Request>,
        settings: Settings,
        attempts: u32,
        backoff: Option<BackoffIter<SmallRng>>,
        deadline: Option<Instant>,
    }
}

impl<S, P, Req> fmt::Debug for ResponseFuture<S, P, Req>
where
    S: Service<<P as Policy<Req>>::Request>,
    P: Policy<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .field("retryable", &self.replay.is_some())
            .finish()
    }
}

pub(crate) fn attempt_deadline(
    per_try: Option<Duration>,
    overall: Option<Instant>,
) -> Option<Instant> {
    let per_try = per_try.and_then(|d| Instant::now().checked_add(d));
    match (per_try, overall) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<S, P, Req> ResponseFuture<S, P, Req>
where
    S: Service<<P as Policy<Req>>::Request>,
    P: Policy<Req>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        fut: S::Future,
        timer: Timer,
        service: S,
        policy: P,
        replay: Option<P::Replay>,
        settings: Settings,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { fut, timer },
            service,
            policy,
            replay,
            next: None,
            settings,
            attempts: 1,
            backoff: None,
            deadline,
        }
    }
}

impl<S, P, Req> Future for ResponseFuture<S, P, Req>
where
    S: Service<<P as Policy<Req>>::Request>,
    S::Error: Into<BoxError>,
    P: ShouldRetry<Req, S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut, timer } => {
                    let result = match fut.poll(cx) {
                        Poll::Ready(r) => r.map_err(Into::into),
                        Poll::Pending => {
                            if timer.poll_fired(cx) {
                                Err(Elapsed::new().into())
                            } else {
                                return Poll::Pending;
                            }
                        }
                    };
                    let Some(replay) = this.replay.as_ref() else {
                        return Poll::Ready(result);
                    };
                    let at_least = match this.policy.check(replay, result.as_ref()) {
                        Action::Return => return Poll::Ready(result),
                        Action::Retry => Duration::ZERO,
                        Action::RetryAfter(d) => d,
                    };
                    let settings = &*this.settings;
                    if *this.attempts >= settings.max_attempts {
                        return Poll::Ready(result);
                    }
                    let backoff = this.backoff.get_or_insert_with(|| settings.backoff.iter());
                    let Some(delay) = backoff.next() else {
                        return Poll::Ready(result);
                    };
                    let delay = delay.max(at_least);
                    let start_at = Instant::now() + delay;
                    if this.deadline.is_some_and(|d| start_at >= d) {
                        return Poll::Ready(result);
                    }
                    let Some(next) = this.policy.replay(replay) else {
                        return Poll::Ready(result);
                    };
                    if let Some(budget) = &settings.budget
                        && !budget.withdraw()
                    {
                        metrics::counter!("msp_resilience_retry_budget_exhausted_total")
                            .increment(1);
                        tracing::debug!("retry budget exhausted");
                        if settings.budget_error {
                            return Poll::Ready(Err(BudgetExhausted::new().into()));
                        }
                        return Poll::Ready(result);
                    }
                    metrics::counter!("msp_resilience_retries_total").increment(1);
                    *this.attempts += 1;
                    *this.next = Some(next);
                    drop(result);
                    if delay.is_zero() {
                        this.state.set(State::Ready);
                    } else {
                        this.state.set(State::Waiting {
                            sleep: tokio::time::sleep_until(start_at),
                        });
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(req) = this.next.take() else {
                        // Unreachable by construction; fail rather than panic.
                        return Poll::Ready(Err("retry polled after its request was taken".into()));
                    };
                    let timer = Timer::until(attempt_deadline(
                        this.settings.per_try_timeout,
                        *this.deadline,
                    ));
                    let fut = this.service.call(req);
                    this.state.set(State::Calling { fut, timer });
                }
            }
        }
    }
}
