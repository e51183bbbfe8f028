//! The server's response body: a whole JSON / text document, or the
//! change stream's events as they happen.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};

use super::error::ConfigServerError;

/// The body of the config server's responses.
pub struct Body(UnsyncBoxBody<Bytes, Infallible>);

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl Body {
    /// A complete body.
    pub(crate) fn full(bytes: Bytes) -> Self {
        Body(Full::new(bytes).boxed_unsync())
    }

    /// A body sent chunk by chunk as the stream yields them.
    pub(crate) fn stream<S>(stream: S) -> Self
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        use futures_util::StreamExt as _;
        Body(StreamBody::new(stream.map(|b| Ok(Frame::data(b)))).boxed_unsync())
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Spring Boot's error document (`status`, `error`, `message`, `path`).
pub(crate) fn error_response(e: &ConfigServerError, path: &str) -> Response<Body> {
    let status = e.status_code();
    let body = serde_json::json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": e.to_string(),
        "path": path,
    });
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}
