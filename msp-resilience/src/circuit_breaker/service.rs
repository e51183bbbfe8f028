use super::future::ResponseFuture;
use super::{Breaker, CircuitBreakerConfig};
use msp_core::BoxError;
use msp_core::classify::{AnyError, Classify};
use std::task::{Context, Poll};
use tower_service::Service;

/// A service guarded by a circuit breaker.
///
/// Rejected calls fail with
/// [`CircuitOpen`](super::error::CircuitOpen) (boxed) without reaching the
/// inner service. Outcomes are classified by `C` when the inner future
/// completes.
///
/// Clones share the breaker: cloning is a reference-count increment, with
/// no allocation (axum clones the service for every request).
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C = AnyError> {
    inner: S,
    breaker: Breaker,
    classifier: C,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a new breaker built from `config`.
    pub fn new(inner: S, config: CircuitBreakerConfig) -> Self {
        CircuitBreaker::with_classifier(inner, Breaker::new(config), AnyError)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Wraps `inner` in `breaker` (shared), classifying with `classifier`.
    pub fn with_classifier(inner: S, breaker: Breaker, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            classifier,
        }
    }

    /// The shared breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
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

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
