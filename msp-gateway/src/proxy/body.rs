//! The bodies of a proxied exchange: [`ProxyBody`] (the upstream's response
//! streamed to the client) and [`LimitedBody`] (the client's request body
//! streamed to the upstream, failing past a byte limit).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use msp_core::BoxError;
use pin_project_lite::pin_project;

use super::ProxyError;

/// The body of a proxied response: the upstream's body, frame by frame as
/// it arrives (data and trailers), never buffered.
///
/// An upstream failing mid-body (reset, truncated chunk) surfaces as a
/// [`ProxyError::Upstream`] frame error; the server in front then aborts the
/// response, so the client sees a truncated message, never a complete one.
///
/// # Example
///
/// ```
/// use http_body::Body;
/// use msp_gateway::proxy::ProxyBody;
///
/// let body = ProxyBody::empty();
/// assert!(body.is_end_stream());
/// ```
pub struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Upstream(hyper::body::Incoming),
    Empty,
}

impl ProxyBody {
    /// An empty body (the answer to a `101 Switching Protocols`, for one).
    pub fn empty() -> Self {
        ProxyBody { kind: Kind::Empty }
    }

    pub(crate) fn upstream(body: hyper::body::Incoming) -> Self {
        ProxyBody {
            kind: Kind::Upstream(body),
        }
    }
}

impl Default for ProxyBody {
    fn default() -> Self {
        ProxyBody::empty()
    }
}

impl fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Upstream(_) => "upstream",
            Kind::Empty => "empty",
        };
        f.debug_struct("ProxyBody").field("kind", &kind).finish()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        match &mut self.kind {
            Kind::Upstream(body) => {
                Pin::new(body)
                    .poll_frame(cx)
                    .map_err(|e| ProxyError::Upstream {
                        source: Box::new(e),
                    })
            }
            Kind::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

pin_project! {
    /// A request body that fails with [`ProxyError::BodyTooLarge`] once more
    /// than `limit` bytes went through, and turns the inner body's own
    /// errors into [`ProxyError::ClientBody`].
    ///
    /// [`forward`](super::forward) wraps every request body in one, so a
    /// chunked body over the limit is cut off while streaming (a
    /// `Content-Length` over the limit is refused earlier, by
    /// [`validate_request`](super::validate_request), before any byte is
    /// read). The size hint passes through, so the upstream request keeps
    /// its `Content-Length`.
    ///
    /// # Example
    ///
    /// ```
    /// use http_body_util::{BodyExt, Full};
    /// use msp_gateway::proxy::{LimitedBody, ProxyError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = LimitedBody::new(Full::new(bytes::Bytes::from_static(b"12345")), 4);
    /// let err = body.collect().await.unwrap_err();
    /// assert!(matches!(err, ProxyError::BodyTooLarge { limit: 4 }));
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`, allowing at most `limit` bytes of data.
    pub fn new(inner: B, limit: u64) -> Self {
        LimitedBody {
            inner,
            remaining: limit,
            limit,
        }
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, ProxyError>>> {
        let this = self.project();
        let frame = match ready!(this.inner.poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => {
                let source: BoxError = e.into();
                // An inner body that is itself limited (or already ours).
                return Poll::Ready(Some(Err(match source.downcast::<ProxyError>() {
                    Ok(own) => *own,
                    Err(source) => ProxyError::ClientBody { source },
                })));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.remaining() as u64;
            if len > *this.remaining {
                *this.remaining = 0;
                return Poll::Ready(Some(Err(ProxyError::BodyTooLarge { limit: *this.limit })));
            }
            *this.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        match hint.exact() {
            // Over the limit: say nothing exact, the stream fails anyway.
            Some(n) if n > self.remaining => SizeHint::default(),
            _ => hint,
        }
    }
}

pin_project! {
    /// The body type the pooled client sends: any request body, boxed once.
    pub(crate) struct UpstreamBody {
        #[pin]
        inner: UnsyncBoxBody<Bytes, ProxyError>,
    }
}

impl UpstreamBody {
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Already limited bodies keep their error; others are tagged as the
        // client's.
        let inner = LimitedBody::new(body, u64::MAX).boxed_unsync();
        UpstreamBody { inner }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody").finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
