//! Response future of [`Chaos`](super::Chaos).

use msp_core::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::Sleep;

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Pass { #[pin] fut: F },
        Delay { #[pin] sleep: Sleep, #[pin] fut: F },
        DelayError { #[pin] sleep: Sleep, err: Option<BoxError> },
        Error { err: Option<BoxError> },
    }
}

pin_project! {
    /// The response future of [`Chaos`](super::Chaos): the inner future,
    /// possibly delayed, or an injected error.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn pass(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Pass { fut },
        }
    }

    pub(super) fn delay(sleep: Sleep, fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Delay { sleep, fut },
        }
    }

    pub(super) fn error(sleep: Option<Sleep>, err: BoxError) -> Self {
        let err = Some(err);
        ResponseFuture {
            kind: match sleep {
                Some(sleep) => Kind::DelayError { sleep, err },
                None => Kind::Error { err },
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Pass { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Delay { sleep, fut } => {
                // The inner future is not polled before the delay is over:
                // the call is held back, not just its answer.
                ready!(sleep.poll(cx));
                fut.poll(cx).map_err(Into::into)
            }
            KindProj::DelayError { sleep, err } => {
                ready!(sleep.poll(cx));
                Poll::Ready(Err(take(err)))
            }
            KindProj::Error { err } => Poll::Ready(Err(take(err))),
        }
    }
}

fn take(err: &mut Option<BoxError>) -> BoxError {
    err.take()
        .unwrap_or_else(|| "chaos future polled after completion".into())
}
