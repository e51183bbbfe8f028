//! [`ResponseBody`]: the body of a [`DiscoveryClient`](super::DiscoveryClient)
//! response.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use msp_core::Instance;
//! use msp_discovery::client::{DiscoveryClient, DiscoveryError, ResponseBody};
//! use msp_discovery::registry::MemoryRegistry;
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     axum::serve(listener, Router::new().route("/", get(|| async { "hello" }))).await
//! });
//! let registry = MemoryRegistry::new();
//! registry.insert(Instance::parse("greeter", &addr.to_string())?)?;
//! let mut client = DiscoveryClient::builder(registry).build::<Empty<Bytes>>();
//!
//! let req = http::Request::get("http://greeter/").body(Empty::new())?;
//! let res: http::Response<ResponseBody> = client.ready().await?.call(req).await?;
//! // A body error would be a `DiscoveryError` too (`TransportKind::Body`).
//! let body: Result<_, DiscoveryError> = res.into_body().collect().await;
//! assert_eq!(body?.to_bytes(), "hello");
//! # Ok(())
//! # }
//! ```

use super::{DiscoveryError, TransportKind};
use crate::balance::Endpoint;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use msp_core::ServiceName;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The body of a [`DiscoveryClient`](super::DiscoveryClient) response: the
/// instance's bytes as they arrive, with errors as
/// [`DiscoveryError::Transport`] of kind [`TransportKind::Body`] naming
/// the service and instance.
///
/// Implements [`http_body::Body`], so it can be collected
/// (`http_body_util::BodyExt::collect`), streamed into an axum response
/// (`axum::body::Body::new`) or passed on by a gateway.
pub struct ResponseBody {
    inner: Incoming,
    origin: Origin,
}

/// Where the body comes from, for errors.
struct Origin {
    service: ServiceName,
    endpoint: Endpoint,
}

impl ResponseBody {
    pub(crate) fn new(inner: Incoming, service: ServiceName, endpoint: Endpoint) -> Self {
        ResponseBody {
            inner,
            origin: Origin { service, endpoint },
        }
    }

    fn error(&self, source: hyper::Error) -> DiscoveryError {
        DiscoveryError::Transport {
            service: self.origin.service.clone(),
            instance: self.origin.endpoint.id().clone(),
            addr: self.origin.endpoint.addr(),
            kind: TransportKind::Body,
            source: Box::new(source),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = DiscoveryError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, DiscoveryError>>> {
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Err(e)) => Poll::Ready(Some(Err(self.error(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("service", &self.origin.service)
            .field("instance", self.origin.endpoint.id())
            .finish_non_exhaustive()
    }
}
