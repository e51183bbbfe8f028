use super::body::{OnResponse, Release};
use super::error::BulkheadFull;
use super::future::ResponseFuture;
use super::{BulkheadConfig, Compartment};
use msp_core::BoxError;
use msp_core::classify::{AnyError, Classify};
use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service behind a bulkhead: at most `max_concurrent` calls at once,
/// up to `max_queue` waiting at most `max_wait`; others fail with a boxed
/// [`BulkheadFull`].
///
/// The slot is taken in `call`. When one is free the inner service is
/// called at once; otherwise the ready inner service moves into the
/// response future (a clone takes its place) and is called once a slot is
/// free.
pub struct Bulkhead<S, C = AnyError, M = OnResponse> {
    inner: S,
    compartment: Compartment,
    classifier: C,
    _mode: PhantomData<fn() -> M>,
}

impl<S: Clone, C: Clone, M> Clone for Bulkhead<S, C, M> {
    fn clone(&self) -> Self {
        Bulkhead {
            inner: self.inner.clone(),
            compartment: self.compartment.clone(),
            classifier: self.classifier.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, M> fmt::Debug for Bulkhead<S, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("compartment", &self.compartment)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S> Bulkhead<S> {
    /// Wraps `inner` in a new compartment built from `config`.
    pub fn new(inner: S, config: BulkheadConfig) -> Self {
        Bulkhead::with_parts(inner, Compartment::new(config), AnyError)
    }
}

impl<S, C, M> Bulkhead<S, C, M> {
    /// Wraps `inner` in `compartment`, classifying with `classifier`.
    pub fn with_parts(inner: S, compartment: Compartment, classifier: C) -> Self {
        Bulkhead {
            inner,
            compartment,
            classifier,
            _mode: PhantomData,
        }
    }

    /// The shared compartment.
    pub fn compartment(&self) -> &Compartment {
        &self.compartment
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

impl<S, C, M, Req> Service<Req> for Bulkhead<S, C, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    M: Release<S::Response>,
{
    type Response = M::Output;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req, C, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(permit) = self.compartment.try_take_permit() {
            return ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone());
        }
        if self.compartment.config().max_queue() == 0 {
            self.compartment.count_rejection();
            return ResponseFuture::rejected(BulkheadFull::queue_full(), self.classifier.clone());
        }
        // Call the service that was made ready, later, from the future.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let compartment = self.compartment.clone();
        ResponseFuture::waiting(
            Box::pin(async move { compartment.acquire_queued().await }),
            ready,
            req,
            self.classifier.clone(),
        )
    }
}
