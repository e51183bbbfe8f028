//! Checks a request before anything reads its body: [`validate_request`]
//! against [`Limits`].

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Method, Request};
use serde::Deserialize;

use super::ProxyError;

/// The size limits of a proxied request.
///
/// # Example
///
/// ```
/// use msp_gateway::proxy::Limits;
///
/// let limits = Limits::default().with_max_body_bytes(1024 * 1024);
/// assert_eq!(limits.max_body_bytes, 1024 * 1024);
/// assert_eq!(limits.max_header_bytes, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest request body, in bytes (default 10 MiB). A
    /// `Content-Length` over it is refused before reading (`413`); a
    /// chunked body is cut off when it gets there.
    pub max_body_bytes: u64,
    /// The largest header section (names, values and 4 bytes of framing per
    /// field), in bytes (default 64 KiB; `431`).
    pub max_header_bytes: usize,
    /// The longest request target, in bytes (default 8 KiB; `414`).
    pub max_uri_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            max_uri_len: 8 * 1024,
        }
    }
}

impl Limits {
    /// Sets [`max_body_bytes`](Self::max_body_bytes).
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`max_header_bytes`](Self::max_header_bytes).
    #[must_use]
    pub fn with_max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`max_uri_len`](Self::max_uri_len).
    #[must_use]
    pub fn with_max_uri_len(mut self, bytes: usize) -> Self {
        self.max_uri_len = bytes;
        self
    }
}

/// Checks what can be checked of `req` without reading its body, so a
/// rejection goes out before hyper's server sends `100 Continue` (it sends
/// it only when the body is first polled):
///
/// - the request target over [`Limits::max_uri_len`] → `414`;
/// - the header section over [`Limits::max_header_bytes`] → `431`;
/// - no `Host` and no absolute-form authority, two `Host` fields, or a
///   `Host` that is not a valid authority (or carries userinfo) → `400`;
///   an absolute-form target (or HTTP/2 `:authority`) wins over a
///   different `Host`, which [`prepare_request`](super::headers::prepare_request)
///   replaces (RFC 9112 §3.2.2);
/// - a scheme other than `http`/`https`, or `CONNECT` → `400`;
/// - a `Content-Length` over [`Limits::max_body_bytes`] → `413`, one that
///   is not a number → `400`;
/// - a raw non-ASCII byte in the target (`http::Uri` accepts raw UTF-8;
///   RFC 3986 wants it percent-encoded) → `400`;
/// - a path with a `.` or `..` segment, raw or percent-encoded
///   (`%2e%2e/`, `..%2f`, `..%5c`), or an encoded NUL → `400`: the gateway
///   never forwards a path that a decoding upstream would read as climbing.
///
/// # Errors
///
/// The [`ProxyError`] for the first check that fails.
///
/// # Example
///
/// ```
/// use msp_gateway::proxy::{validate_request, Limits, ProxyError};
///
/// let req = http::Request::get("/a/%2e%2e/admin").header("host", "x").body(()).unwrap();
/// let err = validate_request(&req, &Limits::default()).unwrap_err();
/// assert!(matches!(err, ProxyError::BadRequest { .. }));
/// ```
pub fn validate_request<B>(req: &Request<B>, limits: &Limits) -> Result<(), ProxyError> {
    let uri = req.uri();
    let target_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    if target_len > limits.max_uri_len {
        return Err(ProxyError::UriTooLong {
            limit: limits.max_uri_len,
        });
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    if req.method() == Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    if let Some(scheme) = uri.scheme_str()
        && !scheme.eq_ignore_ascii_case("http")
        && !scheme.eq_ignore_ascii_case("https")
    {
        return Err(bad("unsupported scheme in the request target"));
    }
    if let Some(pq) = uri.path_and_query()
        && !pq.as_str().bytes().all(|b| b.is_ascii_graphic())
    {
        // http::Uri takes raw UTF-8; RFC 3986 wants it percent-encoded.
        return Err(bad("non-ASCII byte in the request target"));
    }
    check_host(req)?;
    check_content_length(req, limits)?;
    check_path(uri.path())
}

fn bad(reason: &'static str) -> ProxyError {
    ProxyError::BadRequest { reason }
}

fn check_host<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host field"));
    }
    if let Some(host) = host {
        valid_authority(host).ok_or(bad("invalid Host field"))?;
    }
    match (req.uri().authority(), host) {
        (Some(authority), _) if authority.as_str().contains('@') => {
            Err(bad("userinfo in the request target"))
        }
        // Absolute form (or :authority) wins over Host.
        (Some(_), _) | (None, Some(_)) => Ok(()),
        (None, None) => Err(bad("no Host field")),
    }
}

fn valid_authority(value: &HeaderValue) -> Option<Authority> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'@') {
        return None;
    }
    Authority::try_from(bytes).ok()
}

fn check_content_length<B>(req: &Request<B>, limits: &Limits) -> Result<(), ProxyError> {
    for value in req.headers().get_all(header::CONTENT_LENGTH) {
        let len = value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or(bad("invalid Content-Length"))?;
        if len > limits.max_body_bytes {
            return Err(ProxyError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
    }
    Ok(())
}

/// Rejects `.`/`..` segments however they are spelled, and encoded NULs.
fn check_path(path: &str) -> Result<(), ProxyError> {
    if !path.contains('.') && !path.contains('%') {
        return Ok(());
    }
    let decoded = percent_decode(path.as_bytes()).ok_or(bad("invalid percent-encoding in path"))?;
    if decoded.contains(&0) {
        return Err(bad("NUL in path"));
    }
    let dot_segment = decoded
        .split(|b| *b == b'/' || *b == b'\\')
        .any(|seg| seg == b"." || seg == b"..");
    if dot_segment {
        return Err(bad("dot segment in path"));
    }
    Ok(())
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request<()> {
        Request::get(uri)
            .header("host", "example.com")
            .body(())
            .expect("request")
    }

    #[test]
    fn dot_segments_are_rejected_however_spelled() {
        for path in [
            "/a/../b",
            "/a/%2e%2e/b",
            "/a/%2E%2e/b",
            "/a/.%2e/b",
            "/a/..%2fb",
            "/a/..%5cb",
            "/a/./b",
            "/..",
        ] {
            let err = validate_request(&get(path), &Limits::default());
            assert!(matches!(err, Err(ProxyError::BadRequest { .. })), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_with_dots_pass() {
        for path in ["/a/b.json", "/a/...", "/v1.2/x%20y", "/a/.well-known/x"] {
            assert!(
                validate_request(&get(path), &Limits::default()).is_ok(),
                "{path}"
            );
        }
    }

    #[test]
    fn bad_percent_encoding_is_rejected() {
        let err = validate_request(&get("/a%zz"), &Limits::default());
        assert!(matches!(err, Err(ProxyError::BadRequest { .. })));
        let err = validate_request(&get("/a%00b"), &Limits::default());
        assert!(matches!(err, Err(ProxyError::BadRequest { .. })));
    }

    #[test]
    fn host_rules() {
        let none = Request::get("/").body(()).expect("request");
        assert!(validate_request(&none, &Limits::default()).is_err());
        let two = Request::get("/")
            .header("host", "a")
            .header("host", "b")
            .body(())
            .expect("request");
        assert!(validate_request(&two, &Limits::default()).is_err());
        let userinfo = Request::get("/")
            .header("host", "u@a")
            .body(())
            .expect("request");
        assert!(validate_request(&userinfo, &Limits::default()).is_err());
        let absolute = Request::get("http://a.example/x")
            .header("host", "b.example")
            .body(())
            .expect("request");
        assert!(validate_request(&absolute, &Limits::default()).is_ok());
    }

    #[test]
    fn limits() {
        let limits = Limits::default()
            .with_max_uri_len(10)
            .with_max_header_bytes(40)
            .with_max_body_bytes(5);
        assert!(matches!(
            validate_request(&get("/0123456789"), &limits),
            Err(ProxyError::UriTooLong { limit: 10 })
        ));
        let big = Request::get("/")
            .header("host", "a")
            .header("x-big", "x".repeat(40))
            .body(())
            .expect("request");
        assert!(matches!(
            validate_request(&big, &limits),
            Err(ProxyError::HeadersTooLarge { limit: 40 })
        ));
        let body = Request::post("/")
            .header("host", "a")
            .header("content-length", "6")
            .body(())
            .expect("request");
        assert!(matches!(
            validate_request(&body, &limits),
            Err(ProxyError::BodyTooLarge { limit: 5 })
        ));
    }
}
