use super::{Breaker, CircuitBreaker, CircuitBreakerConfig};
use msp_core::classify::{AnyError, HttpClassifier};
use tower_layer::Layer;

/// Wraps services in a [`CircuitBreaker`]; every service it makes (and
/// every clone of those) shares one [`Breaker`].
///
/// `C` decides what a failure is ([`AnyError`] by default: every `Err`;
/// [`HttpClassifier`] for HTTP clients: errors and `5xx`).
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = AnyError> {
    breaker: Breaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer with a new breaker built from `config`; every `Err` of the
    /// inner service is a failure.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::from_breaker(Breaker::new(config))
    }

    /// A layer over an existing breaker (to share it with non-tower code or
    /// with other stacks).
    pub fn from_breaker(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: AnyError,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Uses `classifier` to tell successes from failures.
    #[must_use]
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// Classifies HTTP responses by status: errors and `5xx` are failures,
    /// everything else (`4xx` included) a success. Short for
    /// `.classify(HttpClassifier::new())`.
    #[must_use]
    pub fn classify_http_status(self) -> CircuitBreakerLayer<HttpClassifier> {
        self.classify(HttpClassifier::new())
    }

    /// The shared breaker (for events, snapshots and modes).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::with_classifier(inner, self.breaker.clone(), self.classifier.clone())
    }
}
