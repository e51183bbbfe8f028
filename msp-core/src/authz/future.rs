//! The response future of [`Authorization`](super::Authorization).

use crate::http::ProblemBody;
use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Called { #[pin] fut: F },
        Denied { res: Option<Response<ProblemBody<B>>> },
    }
}

pin_project! {
    /// The inner service's response (body `Either::Left`), or the denial
    /// (body `Either::Right`) at once, without calling the inner service.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Denied { .. } => "denied",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(super) fn called(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut },
        }
    }

    pub(super) fn denied(res: Response<ProblemBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Denied { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ProblemBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut } => {
                Poll::Ready(ready!(fut.poll(cx)).map(|res| res.map(Either::Left)))
            }
            // Polled again after completion: a contract violation by the
            // caller; stay pending rather than panic.
            KindProj::Denied { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
