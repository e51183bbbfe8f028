use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;
use crate::rate_limit::error::RateLimited;
use msp_core::BoxError;
use msp_core::classify::Classify;
use std::fmt;

/// Decides when the fallback runs.
pub trait When<Res> {
    /// Whether `err` calls for the fallback.
    fn on_error(&self, err: &BoxError) -> bool;

    /// Whether a response calls for the fallback (default: never).
    fn on_response(&self, res: &Res) -> bool {
        let _ = res;
        false
    }
}

/// On every error (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnError;

impl<Res> When<Res> for OnError {
    #[inline]
    fn on_error(&self, _: &BoxError) -> bool {
        true
    }
}

/// Only when a resilience layer rejected the call without trying it: an
/// open circuit ([`CircuitOpen`]), a rate limit ([`RateLimited`]) or a full
/// bulkhead ([`BulkheadFull`]), searched through the error's `source()`
/// chain. Other errors, timeouts included, pass through.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnRejection;

/// `true` if `err` (or an error in its source chain) is a rejection by a
/// resilience layer.
pub fn is_rejection(err: &BoxError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&**err);
    while let Some(e) = cur {
        if e.is::<CircuitOpen>() || e.is::<RateLimited>() || e.is::<BulkheadFull>() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl<Res> When<Res> for OnRejection {
    fn on_error(&self, err: &BoxError) -> bool {
        is_rejection(err)
    }
}

/// When a predicate on the error says so.
#[derive(Clone, Copy)]
pub struct OnPredicate<F>(pub F);

impl<F> fmt::Debug for OnPredicate<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnPredicate")
    }
}

impl<F, Res> When<Res> for OnPredicate<F>
where
    F: Fn(&BoxError) -> bool,
{
    fn on_error(&self, err: &BoxError) -> bool {
        (self.0)(err)
    }
}

/// When a [`Classify`] calls the result a failure: errors and failed
/// responses (for example `5xx` with
/// [`HttpClassifier`](msp_core::classify::HttpClassifier)).
#[derive(Debug, Clone, Copy)]
pub struct OnFailure<C>(pub C);

impl<C, Res> When<Res> for OnFailure<C>
where
    C: Classify<Res, BoxError>,
{
    fn on_error(&self, err: &BoxError) -> bool {
        self.0.classify(Err(err)).is_failure()
    }

    fn on_response(&self, res: &Res) -> bool {
        self.0.classify(Ok(res)).is_failure()
    }
}
