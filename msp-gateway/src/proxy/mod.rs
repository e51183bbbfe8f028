//! Proxying correct per RFC 9110/9112: the pooled [`ProxyClient`], the
//! header pass ([`headers`]), request checks ([`validate_request`],
//! [`LimitedBody`]) and [`forward`], which runs one proxied exchange.
//!
//! The gateway composes these behind routing, discovery and resilience;
//! used alone they make a reverse proxy:
//!
//! 1. [`validate_request`] — before anything polls the body, so a refusal
//!    goes out before hyper's server sends `100 Continue` (hyper sends it
//!    only when the body is first polled; auth and rate limits that run
//!    before [`forward`] therefore also run before the client sends its
//!    body);
//! 2. wrap the body in a [`LimitedBody`] (a chunked body over the limit
//!    fails with `413` while streaming);
//! 3. [`forward`] to the upstream's absolute URI with the connection's
//!    [`ForwardContext`];
//! 4. turn a [`ProxyError`] into a problem+json response
//!    ([`ToProblem`](msp_core::http::ToProblem)): 503 connect failure, 504
//!    timeout, 502 reset or malformed upstream response, 413, 414, 431,
//!    400.
//!
//! Bodies stream both ways, frame by frame (SSE events arrive as sent,
//! trailers pass through, gRPC works over an [h2c](ProxyClientBuilder::h2c)
//! client). `Expect` is not forwarded: the gateway's own server answers it
//! and hyper's client does not implement it.
//!
//! # Upgrades
//!
//! An HTTP/1.1 request with `Connection: upgrade` and `Upgrade: websocket`
//! (or any protocol) is forwarded with both fields kept; when the upstream
//! answers `101 Switching Protocols`, [`forward`] joins
//! `hyper::upgrade::on(request)` and `hyper::upgrade::on(response)` with
//! `tokio::io::copy_bidirectional` in a spawned task, and the client gets
//! the `101`. The server in front must serve connections with upgrades
//! (`serve_connection_with_upgrades`). HTTP/2 extended CONNECT (RFC 8441)
//! is not proxied, nor is an upgrade towards an h2c upstream.
//!
//! # Example
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use msp_gateway::proxy::{self, ForwardContext, Limits, ProxyClient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An upstream that says who called it.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = listener.local_addr()?;
//! let app = axum::Router::new().route(
//!     "/hello",
//!     axum::routing::get(|h: http::HeaderMap| async move { format!("{:?}", h["x-forwarded-for"]) }),
//! );
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let client = ProxyClient::new();
//! let ctx = ForwardContext::new("203.0.113.9:50000".parse()?);
//! let req = http::Request::get("/hello").header("host", "api.example.com").body(Empty::<bytes::Bytes>::new())?;
//! proxy::validate_request(&req, &Limits::default())?;
//!
//! let uri = format!("http://{upstream}/hello").parse()?;
//! let res = proxy::forward(&client, req, uri, &ctx).await?;
//! assert_eq!(res.headers()["via"], "1.1 msp-gateway");
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(&body[..], b"\"203.0.113.9\"");
//! # Ok(()) }
//! ```
//!
//! # Bad input
//!
//! What happens to malformed or hostile requests, as the raw-socket corpus
//! in `tests/bad_input.rs` checks. hyper's HTTP/1 parser (httparse) refuses
//! most of them before a request exists; [`validate_request`] the rest. In
//! no case does the upstream see a second, smuggled request.
//!
//! | input | answer | by |
//! |---|---|---|
//! | `Content-Length` and `Transfer-Encoding: chunked` | normalised: read as chunked, `Content-Length` dropped, the connection closed after the response (RFC 9112 §6.1); the upstream gets one chunked request | hyper |
//! | two different `Content-Length`s | `400` | hyper |
//! | `Transfer-Encoding` other than final `chunked` | `400` | hyper |
//! | obs-fold (a header line starting with a space) | `400` | httparse |
//! | bad chunk size (`zz`, overflow) | the upstream request is aborted, the client gets `400` (or the connection closed when the response had started) | hyper + [`LimitedBody`] |
//! | `Connection: X-Forwarded-For` | the incoming field is removed as hop-by-hop, the gateway's own is set after | [`headers`] |
//! | a space in a header name, or before the colon | `400` | httparse |
//! | NUL or bare CR in a value | `400` | httparse |
//! | header section over the server's buffer / over [`Limits::max_header_bytes`] | `431` | hyper / [`validate_request`] |
//! | request target over [`Limits::max_uri_len`] (or hyper's buffer) | `414` (hyper: `431` or `414`) | [`validate_request`] / hyper |
//! | raw bytes that are not UTF-8 in the path | `400` | hyper (`http::Uri`) |
//! | raw UTF-8 (non-ASCII) in the path, not percent-encoded | `400` | [`validate_request`] |
//! | `.`/`..` segments, raw or encoded (`%2e%2e/`, `..%2f`, `..%5c`), `%00` | `400` | [`validate_request`] |
//! | absolute-form target with a different `Host` | normalised: the target's authority wins, `Host` replaced (RFC 9112 §3.2.2) | [`validate_request`], [`headers::prepare_request`] |
//! | no `Host` (HTTP/1.1 or 1.0), two `Host`s, an invalid `Host` | `400` | [`validate_request`] |
//! | `Content-Length` over [`Limits::max_body_bytes`] | `413` before the body is read (no `100 Continue`) | [`validate_request`] |
//! | chunked body over [`Limits::max_body_bytes`] | `413` | [`LimitedBody`] |

mod body;
mod client;
mod context;
mod error;
mod forward;
pub mod headers;
mod validate;

pub use self::body::{LimitedBody, ProxyBody};
pub use self::client::{ProxyClient, ProxyClientBuilder, ResponseFuture};
pub use self::context::{ForwardContext, HostPolicy, TrustedProxies};
pub use self::error::ProxyError;
pub use self::forward::{ForwardFuture, forward};
pub use self::validate::{Limits, validate_request};
