//! Response future of [`HttpError`](super::HttpError).

use super::layer::HttpErrorLayer;
use super::problem::ProblemBody;
use crate::BoxError;
use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Called { #[pin] fut: F, layer: HttpErrorLayer },
        Answered { res: Option<Response<ProblemBody<B>>> },
    }
}

pin_project! {
    /// The response future of [`HttpError`](super::HttpError): the inner
    /// response, or the problem response for its error. Never fails.
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
            Kind::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn called(fut: F, layer: HttpErrorLayer) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut, layer },
        }
    }

    pub(super) fn answered(res: Response<ProblemBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Answered { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ProblemBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut, layer } => Poll::Ready(Ok(match ready!(fut.poll(cx)) {
                Ok(res) => res.map(Either::Left),
                Err(e) => layer.respond(e.into()),
            })),
            // Polled again after completion: a contract violation by the
            // caller; stay pending rather than panic.
            KindProj::Answered { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
