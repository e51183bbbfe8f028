//! Response future of [`Hedge`](super::Hedge).

use super::layer::Shared;
use crate::retry::{Action, Policy, ShouldRetry};
use msp_core::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    #[project = SlotProj]
    enum Slot<F> {
        Running { #[pin] fut: F },
        Done,
    }
}

pin_project! {
    #[project = HedgeProj]
    enum HedgeState<F> {
        Waiting { #[pin] sleep: Sleep },
        Ready,
        Running { #[pin] fut: F },
        Done,
    }
}

pin_project! {
    /// The response future of [`Hedge`](super::Hedge).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, P, Req>
    where
        S: Service<<P as Policy<Req>>::Request>,
        P: Policy<Req>,
    {
        #[pin]
        primary: Slot<S::Future>,
        #[pin]
        hedge: HedgeState<S::Future>,
        service: S,
        policy: P,
        replay: Option<P::Replay>,
        failed: Option<Result<S::Response, BoxError>>,
        start: Instant,
        shared: Arc<Shared>,
    }
}

impl<S, P, Req> fmt::Debug for ResponseFuture<S, P, Req>
where
    S: Service<<P as Policy<Req>>::Request>,
    P: Policy<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("hedgeable", &self.replay.is_some())
            .finish()
    }
}

impl<S, P, Req> ResponseFuture<S, P, Req>
where
    S: Service<<P as Policy<Req>>::Request>,
    P: Policy<Req>,
{
    pub(super) fn new(
        fut: S::Future,
        service: S,
        policy: P,
        replay: Option<P::Replay>,
        hedge_at: Option<Instant>,
        start: Instant,
        shared: Arc<Shared>,
    ) -> Self {
        let hedge = match hedge_at {
            Some(at) => HedgeState::Waiting {
                sleep: tokio::time::sleep_until(at),
            },
            None => HedgeState::Done,
        };
        ResponseFuture {
            primary: Slot::Running { fut },
            hedge,
            service,
            policy,
            replay,
            failed: None,
            start,
            shared,
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

        // Is this result worth returning, or should the other copy finish?
        macro_rules! settle {
            ($result:expr) => {{
                let result: Result<S::Response, BoxError> = $result.map_err(Into::into);
                let success = match this.replay.as_ref() {
                    Some(replay) => this.policy.check(replay, result.as_ref()) == Action::Return,
                    None => true,
                };
                if success {
                    this.shared.delay.record(this.start.elapsed());
                    // Returning drops the other copy: it is cancelled.
                    return Poll::Ready(result);
                }
                *this.failed = Some(result);
            }};
        }

        if let SlotProj::Running { fut } = this.primary.as_mut().project()
            && let Poll::Ready(result) = fut.poll(cx)
        {
            this.primary.set(Slot::Done);
            settle!(result);
        }

        loop {
            match this.hedge.as_mut().project() {
                HedgeProj::Waiting { sleep } => {
                    if matches!(*this.primary, Slot::Done) {
                        // The first copy failed before the hedge was due:
                        // hedging is not retrying.
                        this.hedge.set(HedgeState::Done);
                        continue;
                    }
                    if sleep.poll(cx).is_pending() {
                        break;
                    }
                    let allowed = this.shared.budget.as_ref().is_none_or(|b| b.withdraw());
                    if allowed {
                        this.hedge.set(HedgeState::Ready);
                    } else {
                        metrics::counter!("msp_resilience_hedges_refused_total").increment(1);
                        this.hedge.set(HedgeState::Done);
                    }
                }
                HedgeProj::Ready => match this.service.poll_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(_)) => this.hedge.set(HedgeState::Done),
                    Poll::Ready(Ok(())) => {
                        let req = this.replay.as_ref().and_then(|r| this.policy.replay(r));
                        match req {
                            Some(req) => {
                                metrics::counter!("msp_resilience_hedges_total").increment(1);
                                let fut = this.service.call(req);
                                this.hedge.set(HedgeState::Running { fut });
                            }
                            None => this.hedge.set(HedgeState::Done),
                        }
                    }
                },
                HedgeProj::Running { fut } => match fut.poll(cx) {
                    Poll::Pending => break,
                    Poll::Ready(result) => {
                        this.hedge.set(HedgeState::Done);
                        settle!(result);
                    }
                },
                HedgeProj::Done => break,
            }
        }

        if matches!(*this.primary, Slot::Done) && matches!(*this.hedge, HedgeState::Done) {
            // Both copies failed (or only one ran): return the last failure.
            return Poll::Ready(
                this.failed
                    .take()
                    .unwrap_or_else(|| Err("hedge polled after completion".into())),
            );
        }
        Poll::Pending
    }
}
