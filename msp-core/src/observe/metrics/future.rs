//! The response future and body of [`Metrics`](super::Metrics).

use super::{
    ERRORS_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL, Shared, labels,
};
use crate::classify::{Classify, Outcome};
use ::metrics::{Gauge, Label, SharedString};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

/// Lives from the call until the end of the response body; on drop, leaves
/// the in-flight gauge and, once the status is known, records the duration.
pub(crate) struct Guard {
    service: SharedString,
    route: String,
    method: &'static str,
    start: Instant,
    in_flight: Gauge,
    status_class: Option<&'static str>,
    error_counted: bool,
}

impl Guard {
    pub(crate) fn new(service: SharedString, route: String, method: &'static str) -> Self {
        let in_flight = ::metrics::gauge!(REQUESTS_IN_FLIGHT, labels(&service, &route, method));
        in_flight.increment(1.0);
        Guard {
            service,
            route,
            method,
            start: Instant::now(),
            in_flight,
            status_class: None,
            error_counted: false,
        }
    }

    fn labels(&self, status_class: &'static str) -> Vec<Label> {
        let mut l = labels(&self.service, &self.route, self.method);
        l.push(Label::from_static_parts("status_class", status_class));
        l
    }

    /// The response head (or the error) is here: count the request.
    fn complete(&mut self, status_class: &'static str, outcome: Outcome) {
        self.status_class = Some(status_class);
        let labels = self.labels(status_class);
        ::metrics::counter!(REQUESTS_TOTAL, labels.clone()).increment(1);
        if outcome.is_failure() {
            self.error_counted = true;
            ::metrics::counter!(ERRORS_TOTAL, labels).increment(1);
        }
    }

    /// The body failed while streaming.
    fn body_error(&mut self) {
        if !self.error_counted {
            self.error_counted = true;
            let labels = self.labels(self.status_class.unwrap_or("error"));
            ::metrics::counter!(ERRORS_TOTAL, labels).increment(1);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
        if let Some(class) = self.status_class {
            let secs = self.start.elapsed().as_secs_f64();
            ::metrics::histogram!(REQUEST_DURATION_SECONDS, self.labels(class)).record(secs);
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("route", &self.route)
            .field("method", &self.method)
            .field("start", &self.start)
            .field("status_class", &self.status_class)
            .finish_non_exhaustive()
    }
}

fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

pin_project! {
    /// The response future of [`Metrics`](super::Metrics).
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        guard: Option<Guard>,
        shared: Arc<Shared<C>>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, guard: Guard, shared: Arc<Shared<C>>) -> Self {
        ResponseFuture {
            inner,
            guard: Some(guard),
            shared,
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut guard = this.guard.take();
        let outcome = this.shared.classifier.classify(result.as_ref());
        match result {
            Ok(res) => {
                if let Some(g) = guard.as_mut() {
                    g.complete(status_class(res.status()), outcome);
                }
                Poll::Ready(Ok(res.map(|inner| ResponseBody { inner, guard })))
            }
            Err(e) => {
                if let Some(g) = guard.as_mut() {
                    g.complete("error", outcome);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// The response body of [`Metrics`](super::Metrics): the inner body,
    /// holding the request's metrics until it ends or is dropped.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B> ResponseBody<B> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the inner body; the duration is recorded now.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("guard", &self.guard)
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => {
                this.guard.take();
            }
            Some(Err(_)) => {
                if let Some(mut g) = this.guard.take() {
                    g.body_error();
                }
            }
            Some(Ok(_)) => {
                if this.inner.is_end_stream() {
                    this.guard.take();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
