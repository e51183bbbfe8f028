use super::deadline::DeadlineRequest;
use super::future::ResponseFuture;
use super::layer::TimeoutLayer;
use msp_core::BoxError;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// Fails a call with [`Elapsed`](super::error::Elapsed) once its deadline
/// passes; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    pub(super) inner: S,
    pub(super) layer: TimeoutLayer,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with a deadline `timeout` after each call.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Timeout {
            inner,
            layer: TimeoutLayer::new(timeout),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The effective deadline of `req`, and records it in the request when
/// `propagate`.
pub(crate) fn effective_deadline<R: DeadlineRequest>(
    req: &mut R,
    timeout: Duration,
    propagate: bool,
    read_headers: bool,
) -> Instant {
    let now = Instant::now();
    let timeout = req.timeout_override().unwrap_or(timeout);
    let own = now.checked_add(timeout);
    let deadline = match (own, req.deadline(now, read_headers)) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        // A timeout so large it overflows the clock: far enough.
        (None, None) => now + Duration::from_secs(86_400 * 365 * 30),
    };
    if propagate {
        req.set_deadline(deadline, now);
    }
    deadline
}

impl<S, R> Service<R> for Timeout<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    R: DeadlineRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: R) -> Self::Future {
        let deadline = effective_deadline(
            &mut req,
            self.layer.timeout,
            self.layer.propagate,
            self.layer.read_headers,
        );
        let sleep = tokio::time::sleep_until(deadline);
        ResponseFuture::new(self.inner.call(req), sleep)
    }
}
