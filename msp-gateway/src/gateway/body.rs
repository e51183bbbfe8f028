//! The request and response body types of the [`Gateway`](super::Gateway).

use bytes::Bytes;
use http_body::Body as _;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use msp_core::BoxError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A streaming body of any type, as the gateway passes it on: request
/// bodies to upstreams, response bodies to clients. Never buffered (except
/// by the retry layer, up to its replay limit).
pub struct Body {
    inner: UnsyncBoxBody<Bytes, BoxError>,
    on_end: Option<Box<dyn OnEnd>>,
    bytes: u64,
}

/// Called once when a response body ends or is dropped, with the bytes
/// sent (the access log).
pub(crate) trait OnEnd: Send {
    fn end(self: Box<Self>, bytes: u64, complete: bool);
}

impl Body {
    /// Wraps any body whose data is [`Bytes`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body {
            inner: body.map_err(Into::into).boxed_unsync(),
            on_end: None,
            bytes: 0,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body::new(http_body_util::Empty::<Bytes>::new())
    }

    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::new(http_body_util::Full::new(bytes.into()))
    }

    pub(crate) fn on_end(mut self, f: Box<dyn OnEnd>) -> Self {
        self.on_end = Some(f);
        self
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f.end(self.bytes, self.inner.is_end_stream());
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.on_end.take() {
                    f.end(this.bytes, true);
                }
            }
            _ => {}
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
