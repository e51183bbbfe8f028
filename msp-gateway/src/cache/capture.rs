//! The body of a response being stored: streamed to the client as it
//! comes, copied on the side, stored when it ends whole.

use super::key::Key;
use super::store::{Flight, RouteStore, Slot, Stored};
use crate::gateway::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use http_body::{Frame, SizeHint};
use msp_core::BoxError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Where and how a response is stored once its body is complete.
pub(crate) struct Destination {
    pub(crate) store: Arc<RouteStore>,
    /// The key the response goes under.
    pub(crate) key: Key,
    /// With `Vary`: the key without variant and the varied names, stored
    /// so later lookups know to look for a variant.
    pub(crate) variants: Option<(Key, Arc<[HeaderName]>)>,
    /// The miss this request leads; released after storing.
    pub(crate) flight: Option<Flight>,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) initial_age: u64,
    pub(crate) ttl: Duration,
}

impl Destination {
    /// Stores `body` in the background, then releases the followers (so
    /// they find it stored).
    fn store(self, body: Bytes) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Destination {
            store,
            key,
            variants,
            flight,
            status,
            headers,
            initial_age,
            ttl,
        } = self;
        let stored = Stored {
            status,
            headers,
            body,
            stored_at: Instant::now(),
            initial_age,
            ttl,
        };
        runtime.spawn(async move {
            if let Some((base, names)) = variants {
                store.insert(base, Slot::Variants(names, ttl)).await;
            }
            store.insert(key, Slot::Response(Arc::new(stored))).await;
            drop(flight);
        });
    }
}

/// A response body copied up to `max` bytes while it streams; stored
/// when it ends within that, dropped from the cache otherwise.
pub(crate) struct Capture {
    inner: Body,
    copy: BytesMut,
    max: usize,
    /// `None` once stored or given up.
    destination: Option<Destination>,
}

impl Capture {
    pub(crate) fn new(inner: Body, max: usize, destination: Destination) -> Self {
        let mut capture = Capture {
            inner,
            copy: BytesMut::new(),
            max,
            destination: Some(destination),
        };
        // A body that is already over may never be polled.
        if http_body::Body::is_end_stream(&capture.inner) {
            capture.complete();
        }
        capture
    }

    fn complete(&mut self) {
        if let Some(destination) = self.destination.take() {
            destination.store(std::mem::take(&mut self.copy).freeze());
        }
    }

    fn give_up(&mut self) {
        self.destination = None;
        self.copy = BytesMut::new();
    }
}

impl http_body::Body for Capture {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.destination.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                    Some(data) if this.copy.len() + data.len() <= this.max => {
                        this.copy.extend_from_slice(data);
                        if http_body::Body::is_end_stream(&this.inner) {
                            this.complete();
                        }
                    }
                    // Too big, or trailers: streamed on, not stored.
                    _ => this.give_up(),
                },
                Poll::Ready(Some(Err(_))) => this.give_up(),
                Poll::Ready(None) => this.complete(),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Dropped after the last byte but before the end was polled.
        if self.destination.is_some() && http_body::Body::is_end_stream(&self.inner) {
            self.complete();
        }
    }
}
