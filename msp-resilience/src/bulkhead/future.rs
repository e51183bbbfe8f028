//! The response future of [`Bulkhead`](super::Bulkhead).

use super::BulkheadPermit;
use super::body::Release;
use super::error::BulkheadFull;
use msp_core::BoxError;
use msp_core::classify::Classify;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

type Acquire = Pin<Box<dyn Future<Output = Result<BulkheadPermit, BulkheadFull>> + Send>>;

pin_project! {
    /// Waits for a slot if needed, calls the inner service, and hands back
    /// its response with the slot released as the mode `M` says.
    pub struct ResponseFuture<F, S, Req, C, M> {
        #[pin]
        state: State<F, S, Req>,
        classifier: C,
        _mode: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, Req> {
        Waiting { acquire: Acquire, inner: Option<S>, req: Option<Req> },
        Called { #[pin] fut: F, permit: Option<BulkheadPermit> },
        Rejected { full: BulkheadFull },
    }
}

impl<F, S, Req, C, M> fmt::Debug for ResponseFuture<F, S, Req, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, Req, C, M> ResponseFuture<F, S, Req, C, M> {
    pub(crate) fn called(fut: F, permit: BulkheadPermit, classifier: C) -> Self {
        Self::with(
            State::Called {
                fut,
                permit: Some(permit),
            },
            classifier,
        )
    }

    pub(crate) fn waiting(acquire: Acquire, inner: S, req: Req, classifier: C) -> Self {
        Self::with(
            State::Waiting {
                acquire,
                inner: Some(inner),
                req: Some(req),
            },
            classifier,
        )
    }

    pub(crate) fn rejected(full: BulkheadFull, classifier: C) -> Self {
        Self::with(State::Rejected { full }, classifier)
    }

    fn with(state: State<F, S, Req>, classifier: C) -> Self {
        ResponseFuture {
            state,
            classifier,
            _mode: PhantomData,
        }
    }
}

impl<F, S, Req, C, M> Future for ResponseFuture<F, S, Req, C, M>
where
    S: Service<Req, Future = F>,
    F: Future<Output = Result<S::Response, S::Error>>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    M: Release<S::Response>,
{
    type Output = Result<M::Output, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Waiting {
                    acquire,
                    inner,
                    req,
                } => {
                    let permit = match ready!(acquire.as_mut().poll(cx)) {
                        Ok(permit) => permit,
                        Err(full) => return Poll::Ready(Err(Box::new(full))),
                    };
                    match (inner.take(), req.take()) {
                        (Some(mut svc), Some(req)) => State::Called {
                            fut: svc.call(req),
                            permit: Some(permit),
                        },
                        _ => {
                            return Poll::Ready(Err(
                                "bulkhead future polled after completion".into()
                            ));
                        }
                    }
                }
                StateProj::Called { fut, permit } => {
                    let result = ready!(fut.poll(cx));
                    let Some(mut permit) = permit.take() else {
                        return Poll::Ready(Err("bulkhead future polled after completion".into()));
                    };
                    permit.record(this.classifier.classify(result.as_ref()));
                    return Poll::Ready(match result {
                        Ok(res) => Ok(M::release(res, permit)),
                        Err(e) => Err(e.into()),
                    });
                }
                StateProj::Rejected { full } => return Poll::Ready(Err(Box::new(*full))),
            };
            this.state.set(next);
        }
    }
}
