//! Response futures of the rate-limit services.

use super::Admitted;
use super::error::RateLimited;
use super::service::admitted_headers;
use http::Response;
use msp_core::BoxError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// The inner service's response, or [`RateLimited`] at once.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called { #[pin] fut: F },
        Limited { limited: RateLimited },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut },
        }
    }

    pub(crate) fn limited(limited: RateLimited) -> Self {
        ResponseFuture {
            kind: Kind::Limited { limited },
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
            KindProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Limited { limited } => Poll::Ready(Err(Box::new(*limited))),
        }
    }
}

pin_project! {
    /// The inner response with `RateLimit-*` headers added, or a `429`.
    #[derive(Debug)]
    pub struct HttpResponseFuture<F, B> {
        #[pin]
        kind: HttpKind<F, B>,
    }
}

pin_project! {
    #[project = HttpKindProj]
    #[derive(Debug)]
    enum HttpKind<F, B> {
        Called { #[pin] fut: F, admitted: Admitted },
        Limited { response: Option<Response<B>> },
    }
}

impl<F, B> HttpResponseFuture<F, B> {
    pub(crate) fn called(fut: F, admitted: Admitted) -> Self {
        HttpResponseFuture {
            kind: HttpKind::Called { fut, admitted },
        }
    }

    pub(crate) fn limited(response: Response<B>) -> Self {
        HttpResponseFuture {
            kind: HttpKind::Limited {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for HttpResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            HttpKindProj::Called { fut, admitted } => {
                let mut res = ready!(fut.poll(cx))?;
                admitted_headers(res.headers_mut(), admitted);
                Poll::Ready(Ok(res))
            }
            HttpKindProj::Limited { response } => match response.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => panic!("HttpResponseFuture polled after completion"),
            },
        }
    }
}
