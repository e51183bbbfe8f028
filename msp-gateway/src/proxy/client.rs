//! [`ProxyClient`]: the one pooled HTTP client the gateway sends upstream
//! requests with.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use msp_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::ProxyError;
use super::body::{ProxyBody, UpstreamBody};

/// A pooled HTTP/1.1 (or, built with [`h2c`](ProxyClientBuilder::h2c),
/// prior-knowledge HTTP/2) client, as a `tower::Service` from
/// `http::Request<B>` with an absolute `http://` URI to
/// `http::Response<ProxyBody>`.
///
/// Bodies stream both ways (the request body is boxed once, never
/// buffered); trailers pass through. Clones share one connection pool.
/// The client is sent the request as given: the header pass is
/// [`forward`](super::forward)'s (or
/// [`prepare_request`](super::headers::prepare_request)'s) job.
///
/// Errors are [`ProxyError`]s: [`Connect`](ProxyError::Connect) (503) when
/// no connection could be made, [`Timeout`](ProxyError::Timeout) (504) past
/// the [response timeout](ProxyClientBuilder::response_timeout),
/// [`Upstream`](ProxyError::Upstream) (502) for a reset or a malformed
/// response, and the request body's own errors (413, 400) as themselves.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use http_body_util::Empty;
/// use msp_gateway::proxy::ProxyClient;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ProxyClient::builder()
///     .connect_timeout(Duration::from_millis(500))
///     .response_timeout(Some(Duration::from_secs(10)))
///     .build();
/// let req = http::Request::get("http://127.0.0.1:3000/health")
///     .body(Empty::<bytes::Bytes>::new())?;
/// let res = client.oneshot(req).await?;
/// println!("{}", res.status());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ProxyClient {
    inner: Client<HttpConnector, UpstreamBody>,
    h2c: bool,
    response_timeout: Option<Duration>,
}

impl ProxyClient {
    /// A client with the defaults of [`ProxyClientBuilder`].
    pub fn new() -> Self {
        ProxyClient::builder().build()
    }

    /// Starts a builder.
    pub fn builder() -> ProxyClientBuilder {
        ProxyClientBuilder::default()
    }

    /// `true` when this client speaks prior-knowledge HTTP/2 (h2c).
    pub fn is_h2c(&self) -> bool {
        self.h2c
    }
}

impl Default for ProxyClient {
    fn default() -> Self {
        ProxyClient::new()
    }
}

/// Settings of a [`ProxyClient`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use msp_gateway::proxy::ProxyClient;
///
/// // The client for gRPC upstreams.
/// let grpc = ProxyClient::builder()
///     .h2c(true)
///     .pool_idle_timeout(Duration::from_secs(30))
///     .build();
/// assert!(grpc.is_h2c());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProxyClientBuilder {
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    response_timeout: Option<Duration>,
    h2c: bool,
}

impl Default for ProxyClientBuilder {
    fn default() -> Self {
        ProxyClientBuilder {
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            response_timeout: None,
            h2c: false,
        }
    }
}

impl ProxyClientBuilder {
    /// How long a TCP connect may take (default 1 s); past it the request
    /// fails with [`ProxyError::Connect`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per upstream address (default
    /// 256).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// How long to wait for the response head once the request is handed
    /// to the pool (connect included), default none: the gateway's
    /// per-route timeout usually bounds the whole exchange instead. Past it
    /// the request fails with [`ProxyError::Timeout`]. The body is not
    /// covered (a stream may last as long as it likes).
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Speak prior-knowledge HTTP/2 (h2c) to every upstream: for gRPC
    /// services (default `false`, HTTP/1.1).
    pub fn h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// Builds the client (no connection is made yet), and registers
    /// [`ProxyError`] with [`msp_core::http::register`] so an
    /// `HttpErrorLayer` anywhere in the stack answers its problem.
    pub fn build(self) -> ProxyClient {
        msp_core::http::register::<ProxyError>();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.h2c)
            .build(connector);
        ProxyClient {
            inner,
            h2c: self.h2c,
            response_timeout: self.response_timeout,
        }
    }
}

impl<B> Service<Request<B>> for ProxyClient
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // The pool queues internally; a connect failure is the call's error.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let (mut parts, body) = req.into_parts();
        parts.version = if self.h2c {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let inner = self
            .inner
            .request(Request::from_parts(parts, UpstreamBody::new(body)));
        ResponseFuture {
            inner,
            sleep: self.response_timeout.map(tokio::time::sleep),
            after: self.response_timeout.unwrap_or_default(),
        }
    }
}

pin_project! {
    /// The future of a [`ProxyClient`] call.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture {
        #[pin]
        inner: hyper_util::client::legacy::ResponseFuture,
        #[pin]
        sleep: Option<Sleep>,
        after: Duration,
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.sleep.as_ref().map(|_| self.after))
            .finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ProxyBody>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.inner.poll(cx) {
            return Poll::Ready(match res {
                Ok(res) => Ok(res.map(ProxyBody::upstream)),
                Err(e) => Err(ProxyError::from_client(e)),
            });
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            return Poll::Ready(Err(ProxyError::Timeout { after: *this.after }));
        }
        Poll::Pending
    }
}
