use super::budget::RetryBudget;
use super::future::{ResponseFuture, Timer, attempt_deadline};
use super::policy::{Policy, ShouldRetry};
use msp_core::BoxError;
use msp_core::backoff::Backoff;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// The settings shared by a layer and every service it made.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) budget_error: bool,
}

/// Retries failed calls as its [`Policy`] allows; see the
/// [module docs](super).
#[derive(Debug)]
pub struct Retry<S, P> {
    pub(super) inner: S,
    pub(super) policy: P,
    pub(super) settings: Arc<Settings>,
}

impl<S: Clone, P: Clone> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S, P> Retry<S, P> {
    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The retry budget shared by the clones of this service, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.settings.budget.as_ref()
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

impl<S, P, Req> Service<Req> for Retry<S, P>
where
    P: ShouldRetry<Req, S::Response> + Clone,
    S: Service<<P as Policy<Req>>::Request> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(budget) = &self.settings.budget {
            budget.deposit();
        }
        let (first, replay) = self.policy.prepare(req);
        let deadline = self.policy.deadline(&first);
        let timer = Timer::until(attempt_deadline(self.settings.per_try_timeout, deadline));
        // Call the service that was made ready; keep a clone for retries.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let fut = ready.call(first);
        ResponseFuture::new(
            fut,
            timer,
            ready,
            self.policy.clone(),
            replay,
            // By value: no shared refcount is touched per call unless a
            // budget is set.
            Settings::clone(&self.settings),
            deadline,
        )
    }
}
