use super::future::ResponseFuture;
use super::layer::Shared;
use crate::retry::{Policy, ShouldRetry};
use msp_core::BoxError;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower_service::Service;

/// Sends a second copy of a slow request and returns the first success;
/// see the [module docs](super).
#[derive(Debug)]
pub struct Hedge<S, P> {
    pub(super) inner: S,
    pub(super) policy: P,
    pub(super) shared: Arc<Shared>,
}

impl<S: Clone, P: Clone> Clone for Hedge<S, P> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, P> Hedge<S, P> {
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

impl<S, P, Req> Service<Req> for Hedge<S, P>
where
    P: ShouldRetry<Req, S::Response> + Clone,
    S: Service<<P as Policy<Req>>::Request> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        let start = Instant::now();
        let (first, replay) = self.policy.prepare(req);
        let hedge_at = match (&replay, self.shared.delay.current()) {
            (Some(_), Some(delay)) => start.checked_add(delay),
            _ => None,
        };
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let fut = ready.call(first);
        ResponseFuture::new(
            fut,
            ready,
            self.policy.clone(),
            replay,
            hedge_at,
            start,
            Arc::clone(&self.shared),
        )
    }
}
