use super::service::{Fallback, FromService, FromValue};
use super::trigger::{OnError, OnFailure, OnPredicate, OnRejection};
use msp_core::BoxError;
use std::sync::Arc;
use tower_layer::Layer;

/// Answers from a fallback when the inner service fails; see the
/// [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct FallbackLayer<H, W = OnError> {
    handler: H,
    when: W,
}

impl<F> FallbackLayer<FromValue<F>> {
    /// Answers with `f(failure)`, where `failure` is the error or the
    /// failed response ([`Failed`](super::Failed)).
    pub fn value(f: F) -> Self {
        FallbackLayer {
            handler: FromValue(f),
            when: OnError,
        }
    }
}

impl<F> FallbackLayer<FromService<F>> {
    /// Sends a clone of the request to `service`; requests must be `Clone`.
    pub fn service(service: F) -> Self {
        FallbackLayer {
            handler: FromService(service),
            when: OnError,
        }
    }
}

impl<H, W> FallbackLayer<H, W> {
    fn when_<W2>(self, when: W2) -> FallbackLayer<H, W2> {
        FallbackLayer {
            handler: self.handler,
            when,
        }
    }

    /// Falls back only on the errors for which `predicate` is `true`.
    pub fn when<P>(self, predicate: P) -> FallbackLayer<H, OnPredicate<P>>
    where
        P: Fn(&BoxError) -> bool,
    {
        self.when_(OnPredicate(predicate))
    }

    /// Falls back only when a resilience layer rejected the call (an open
    /// circuit, a rate limit, a full bulkhead), not on errors of the call
    /// itself.
    pub fn on_rejection(self) -> FallbackLayer<H, OnRejection> {
        self.when_(OnRejection)
    }

    /// Falls back when `classifier` calls the result a failure, responses
    /// included (a `503` with the [`HttpClassifier`](msp_core::classify::HttpClassifier)).
    pub fn on_failure<C>(self, classifier: C) -> FallbackLayer<H, OnFailure<C>> {
        self.when_(OnFailure(classifier))
    }

    /// Falls back under a custom [`When`](super::When).
    pub fn on<W2>(self, when: W2) -> FallbackLayer<H, W2> {
        self.when_(when)
    }
}

impl<S, H: Clone, W: Clone> Layer<S> for FallbackLayer<H, W> {
    type Service = Fallback<S, H, W>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            shared: Arc::new((self.handler.clone(), self.when.clone())),
        }
    }
}
