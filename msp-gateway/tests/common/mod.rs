//! Test harness of the proxy tests: [`forward`] served by a hyper-util auto
//! server (HTTP/1.1 and h2c) that knows each connection's peer, in front of
//! a recording axum backend or a raw-socket one.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Either, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use msp_core::http::ToProblem;
use msp_gateway::proxy::{
    self, ForwardContext, HostPolicy, LimitedBody, Limits, ProxyClient, TrustedProxies,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How the harness proxy is set up.
#[derive(Clone)]
pub struct ProxyOptions {
    pub client: ProxyClient,
    pub trusted: TrustedProxies,
    pub limits: Limits,
    pub host_policy: HostPolicy,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            client: ProxyClient::new(),
            trusted: TrustedProxies::none(),
            limits: Limits::default(),
            host_policy: HostPolicy::Preserve,
        }
    }
}

/// A running harness proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Connection tasks that panicked.
    pub panics: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn assert_no_panics(&self) {
        assert_eq!(
            self.panics.load(Ordering::SeqCst),
            0,
            "a proxy task panicked"
        );
    }
}

/// Serves validate → limit → forward → problem+json, sending every request
/// to `upstream` with its path and query unchanged.
pub async fn spawn_proxy(upstream: SocketAddr, opts: ProxyOptions) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let opts = opts.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let opts = opts.clone();
                    async move { Ok::<_, Infallible>(handle(req, peer, upstream, &opts).await) }
                });
            let conn = tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
            let counter = counter.clone();
            tokio::spawn(async move {
                if let Err(e) = conn.await
                    && e.is_panic()
                {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    Proxy { addr, panics }
}

type ProxyResponse = http::Response<Either<proxy::ProxyBody, http_body_util::Full<Bytes>>>;

async fn handle(
    req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    upstream: SocketAddr,
    opts: &ProxyOptions,
) -> ProxyResponse {
    if let Err(e) = proxy::validate_request(&req, &opts.limits) {
        return e.to_problem().into_response();
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse() else {
        return http::Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Either::Right(Default::default()))
            .expect("response");
    };
    let ctx = ForwardContext::new(peer)
        .with_trusted(opts.trusted.clone())
        .with_host_policy(opts.host_policy.clone());
    let max = opts.limits.max_body_bytes;
    let req = req.map(|b| LimitedBody::new(b, max));
    match proxy::forward(&opts.client, req, uri, &ctx).await {
        Ok(res) => res.map(Either::Left),
        Err(e) => e.to_problem().into_response(),
    }
}

/// What the recording backend saw of one request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: http::Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An axum backend recording every request it receives.
#[derive(Clone, Default)]
pub struct Backend {
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// `/sse` sends its second event when this fires.
    pub sse_gate: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl Backend {
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.uri).collect()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the backend saw a request")
    }
}

/// Starts the recording backend: `/cookies` sets three cookies, `/sse`
/// streams two events (the second once [`Backend::sse_gate`] fires),
/// `/trailers` ends with a trailer, anything else answers `ok` after
/// reading the whole body.
pub async fn spawn_backend() -> (SocketAddr, Backend) {
    let backend = Backend::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(backend.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, backend)
}

async fn record(State(backend): State<Backend>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    // Streams are answered before their (possibly endless) body is read.
    let body = if path == "/sse" {
        Bytes::new()
    } else {
        match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    };
    backend.seen.lock().expect("lock").push(Recorded {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    match path.as_str() {
        "/cookies" => {
            let mut res = "cookies".into_response();
            for c in ["a=1; Path=/", "b=2; HttpOnly", "c=3, with a comma; Secure"] {
                res.headers_mut()
                    .append(http::header::SET_COOKIE, HeaderValue::from_static(c));
            }
            res
        }
        "/sse" => {
            let gate = backend.sse_gate.lock().expect("lock").take();
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(Bytes::from_static(b"data: first\n\n"))
            });
            let second = futures_util::stream::once(async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                Ok::<_, Infallible>(Bytes::from_static(b"data: second\n\n"))
            });
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(first.chain(second)))
                .expect("response")
        }
        "/trailers" => {
            let frames = futures_util::stream::iter([
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"payload"))),
                Ok(Frame::trailers({
                    let mut t = HeaderMap::new();
                    t.insert("x-checksum", HeaderValue::from_static("abc123"));
                    t
                })),
            ]);
            http::Response::builder()
                .header("trailer", "x-checksum")
                .body(Body::new(StreamBody::new(frames)))
                .expect("response")
        }
        _ => format!("ok {}", body.len()).into_response(),
    }
}

/// A raw TCP backend: for each connection, reads the request head, then
/// writes `response` and closes — or, with `None`, never answers (holds the
/// connection open until the test ends).
pub async fn spawn_raw_backend(response: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw");
    let addr = listener.local_addr().expect("raw addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                read_head(&mut stream).await;
                match response {
                    Some(bytes) => {
                        let _ = stream.write_all(bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    None => {
                        let mut sink = [0u8; 1024];
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    addr
}

/// Reads until the end of a request head (or EOF).
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// A WebSocket echo backend (tokio-tungstenite's server handshake on a raw
/// socket).
pub async fn spawn_ws_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
    let addr = listener.local_addr().expect("ws addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if (msg.is_text() || msg.is_binary())
                        && futures_util::SinkExt::send(&mut ws, msg).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// An address nothing listens on (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// An HTTP/1.1 test client.
pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::combinators::BoxBody<Bytes, Infallible>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A request body for [`client`].
pub fn body(bytes: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    http_body_util::Full::new(bytes.into()).boxed()
}

/// Writes `bytes` to the proxy on a fresh connection and reads until the
/// proxy closes it (bounded by a guard so a bug fails instead of hanging).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect proxy");
    stream.write_all(bytes).await.expect("write request");
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the proxy closed the connection");
    out
}

/// The status codes of every response in a raw byte stream, in order.
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(i) = rest.find("HTTP/1.") {
        let code = rest
            .get(i + 8..i + 13)
            .filter(|c| c.starts_with(' ') && c.ends_with(' '))
            .and_then(|c| c.trim().parse().ok());
        if let Some(code) = code {
            out.push(code);
        }
        rest = &rest[i + 7..];
    }
    out
}
