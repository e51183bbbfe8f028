//! Holding a bulkhead slot until a response body ends.

use super::BulkheadPermit;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// A response body that holds its call's bulkhead slot until the body
    /// ends (last frame, error, or drop).
    ///
    /// A slot released when the headers arrive would let a server stream
    /// unlimited bodies concurrently; this one is released when the work is
    /// really done.
    #[derive(Debug)]
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<BulkheadPermit>,
    }
}

impl<B> PermitBody<B> {
    /// Wraps `inner`, holding `permit` until it ends.
    pub fn new(inner: B, permit: BulkheadPermit) -> Self {
        PermitBody {
            inner,
            permit: Some(permit),
        }
    }

    /// Whether the slot is still held.
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
        };
        if ended {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When a call's slot is returned: what the bulkhead service's response
/// becomes.
pub trait Release<T> {
    /// The response handed to the caller.
    type Output;

    /// Turns the inner response and the call's slot into the output.
    fn release(response: T, permit: BulkheadPermit) -> Self::Output;
}

/// Returns the slot when the response future completes (any service).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnResponse;

impl<T> Release<T> for OnResponse {
    type Output = T;

    fn release(response: T, permit: BulkheadPermit) -> T {
        drop(permit);
        response
    }
}

/// Returns the slot when the HTTP response body ends ([`PermitBody`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnBodyEnd;

impl<B> Release<Response<B>> for OnBodyEnd {
    type Output = Response<PermitBody<B>>;

    fn release(response: Response<B>, permit: BulkheadPermit) -> Self::Output {
        response.map(|body| PermitBody::new(body, permit))
    }
}
