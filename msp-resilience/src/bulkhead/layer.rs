use super::body::{OnBodyEnd, OnResponse};
use super::{Bulkhead, BulkheadConfig, Compartment};
use msp_core::classify::{AnyError, HttpClassifier};
use std::fmt;
use std::marker::PhantomData;
use tower_layer::Layer;

/// Wraps services in a [`Bulkhead`]; every service it makes (and every
/// clone) shares one [`Compartment`].
///
/// `M` says when a call's slot is returned: [`OnResponse`] (when the
/// response future completes) or, after
/// [`release_on_body_end`](BulkheadLayer::release_on_body_end),
/// [`OnBodyEnd`] (when the HTTP response body ends). `C` classifies
/// outcomes for the adaptive limit.
pub struct BulkheadLayer<C = AnyError, M = OnResponse> {
    compartment: Compartment,
    classifier: C,
    _mode: PhantomData<fn() -> M>,
}

impl<C: Clone, M> Clone for BulkheadLayer<C, M> {
    fn clone(&self) -> Self {
        BulkheadLayer {
            compartment: self.compartment.clone(),
            classifier: self.classifier.clone(),
            _mode: PhantomData,
        }
    }
}

impl<C: fmt::Debug, M> fmt::Debug for BulkheadLayer<C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("compartment", &self.compartment)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl BulkheadLayer {
    /// A layer with a new compartment built from `config`.
    pub fn new(config: BulkheadConfig) -> Self {
        Self::from_compartment(Compartment::new(config))
    }

    /// A layer over an existing compartment (shared with other stacks or
    /// non-tower code).
    pub fn from_compartment(compartment: Compartment) -> Self {
        BulkheadLayer {
            compartment,
            classifier: AnyError,
            _mode: PhantomData,
        }
    }
}

impl<C, M> BulkheadLayer<C, M> {
    /// Classifies outcomes (for the adaptive limit) with `classifier`.
    #[must_use]
    pub fn classify<C2>(self, classifier: C2) -> BulkheadLayer<C2, M> {
        BulkheadLayer {
            compartment: self.compartment,
            classifier,
            _mode: PhantomData,
        }
    }

    /// Classifies outcomes (for the adaptive limit) by HTTP status: errors
    /// and `5xx` are failures. Short for `.classify(HttpClassifier::new())`.
    #[must_use]
    pub fn classify_http_status(self) -> BulkheadLayer<HttpClassifier, M> {
        self.classify(HttpClassifier::new())
    }

    /// Holds each call's slot until its HTTP response body ends
    /// ([`PermitBody`](super::PermitBody)) rather than until the response
    /// head arrives, so streamed bodies count against the limit.
    #[must_use]
    pub fn release_on_body_end(self) -> BulkheadLayer<C, OnBodyEnd> {
        BulkheadLayer {
            compartment: self.compartment,
            classifier: self.classifier,
            _mode: PhantomData,
        }
    }

    /// The shared compartment.
    pub fn compartment(&self) -> &Compartment {
        &self.compartment
    }
}

impl<S, C: Clone, M> Layer<S> for BulkheadLayer<C, M> {
    type Service = Bulkhead<S, C, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::with_parts(inner, self.compartment.clone(), self.classifier.clone())
    }
}
