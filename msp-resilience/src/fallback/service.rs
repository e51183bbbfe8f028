use super::future::{ServiceFuture, ValueFuture};
use super::trigger::When;
use msp_core::BoxError;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// What went wrong, handed to a value fallback.
#[derive(Debug)]
pub enum Failed<Res> {
    /// The call failed with this error.
    Error(BoxError),
    /// The call answered with a response the trigger calls a failure.
    Response(Res),
}

/// A fallback producing a value: see [`FallbackLayer::value`](super::FallbackLayer::value).
#[derive(Clone, Copy)]
pub struct FromValue<F>(pub(crate) F);

/// A fallback service: see [`FallbackLayer::service`](super::FallbackLayer::service).
#[derive(Debug, Clone, Copy)]
pub struct FromService<F>(pub(crate) F);

impl<F> fmt::Debug for FromValue<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromValue")
    }
}

/// Calls a fallback when the inner service fails; see the
/// [module docs](super).
#[derive(Debug)]
pub struct Fallback<S, H, W> {
    pub(super) inner: S,
    pub(super) shared: Arc<(H, W)>,
}

impl<S: Clone, H, W> Clone for Fallback<S, H, W> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, H, W> Fallback<S, H, W> {
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

impl<S, F, W, Req> Service<Req> for Fallback<S, FromValue<F>, W>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Fn(Failed<S::Response>) -> S::Response,
    W: When<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ValueFuture<S::Future, F, W>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A rejection in `poll_ready` cannot be answered here without
        // breaking the readiness contract; it passes through.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ValueFuture::new(self.inner.call(req), Arc::clone(&self.shared))
    }
}

impl<S, F, W, Req> Service<Req> for Fallback<S, FromService<F>, W>
where
    Req: Clone,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Service<Req, Response = S::Response> + Clone,
    F::Error: Into<BoxError>,
    W: When<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ServiceFuture<S::Future, F, W, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let keep = req.clone();
        ServiceFuture::new(self.inner.call(req), keep, Arc::clone(&self.shared))
    }
}
