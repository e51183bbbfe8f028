//! The header pass of a proxied exchange (RFC 9110 §7.6, RFC 7239):
//! hop-by-hop fields removed both ways, `Via` and the forwarding headers
//! appended, `Host` set per [`HostPolicy`].
//!
//! # Example
//!
//! ```
//! use msp_gateway::proxy::{headers, ForwardContext};
//!
//! let mut req = http::Request::builder()
//!     .uri("/users/42")
//!     .header("host", "api.example.com")
//!     .header("connection", "keep-alive, x-secret")
//!     .header("x-secret", "1")
//!     .body(())
//!     .unwrap();
//! let ctx = ForwardContext::new("198.51.100.7:40000".parse().unwrap());
//! let upstream = "http://10.0.0.1:8080/users/42".parse().unwrap();
//! headers::prepare_request(&mut req, upstream, &ctx).unwrap();
//!
//! let h = req.headers();
//! assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
//! assert_eq!(h["x-forwarded-for"], "198.51.100.7");
//! assert_eq!(h["x-forwarded-host"], "api.example.com");
//! assert_eq!(h["forwarded"], "for=198.51.100.7;proto=http;host=api.example.com");
//! assert_eq!(h["via"], "1.1 msp-gateway");
//! assert_eq!(h["host"], "10.0.0.1:8080");
//! ```

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::Scheme;
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};

use super::ProxyError;
use super::context::{ForwardContext, HostPolicy, canonical};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `Keep-Alive` (RFC 9112 appendix C.2.2).
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection` (never standard, still sent by old clients).
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Where `Connection` and `TE` sit in [`HOP_BY_HOP`].
const CONNECTION_INDEX: usize = 0;
const TE_INDEX: usize = 3;

/// The hop-by-hop fields removed whatever `Connection` says.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// The protocol a request asks to upgrade to (`websocket`): HTTP/1.1 with
/// an `Upgrade` field and the `upgrade` option in `Connection`. `None`
/// otherwise (HTTP/2 has no `Upgrade`).
pub fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    wants_upgrade(req.headers())
}

fn wants_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    connection_options(headers)
        .any(|o| o.eq_ignore_ascii_case("upgrade"))
        .then(|| upgrade.clone())
}

/// The options listed in every `Connection` field line.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
}

/// `true` when `TE` lists `trailers` (the one TE option forwarded: gRPC
/// needs it end to end).
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Removes the hop-by-hop fields: `Connection` and every field it
/// nominates, `Keep-Alive`, `Proxy-Connection`, `TE` (but `TE: trailers`
/// stays), `Transfer-Encoding`, `Proxy-Authorization`,
/// `Proxy-Authenticate`, and `Upgrade` unless `upgrade` is given, in which
/// case `Upgrade: <upgrade>` and `Connection: upgrade` are what remains.
///
/// Idempotent. For a request, [`strip_request`] finds the upgrade itself;
/// run it as soon as the request arrives (see there why).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    // One pass over the names (no hashing) finds which of the fixed fields
    // are there; the usual request has one or none, so most removals (a
    // hash each) are skipped.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    let trailers = present & (1 << TE_INDEX) != 0 && wants_trailers(headers);
    if present & (1 << CONNECTION_INDEX) != 0 {
        let nominated: Vec<HeaderName> = connection_options(headers)
            .filter_map(|o| HeaderName::from_bytes(o.as_bytes()).ok())
            .collect();
        for name in nominated {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// [`strip_hop_by_hop`] on a request, keeping a WebSocket-style upgrade
/// ([`upgrade_protocol`]).
///
/// Call it where a request enters, before anything adds headers of its own
/// (identity headers from auth): [`prepare_request`] strips again, and a
/// field added in between would otherwise be removable by a client's
/// `Connection: x-consumer`. After this pass no nominating `Connection`
/// field is left, so the second pass removes nothing it should not.
///
/// # Example
///
/// ```
/// use msp_gateway::proxy::{headers, ForwardContext};
///
/// let mut req = http::Request::get("/")
///     .header("host", "x")
///     .header("connection", "x-consumer")
///     .body(())
///     .unwrap();
/// headers::strip_request(&mut req);
/// // Auth runs, then adds the identity it established.
/// req.headers_mut().insert("x-consumer", "alice".parse().unwrap());
///
/// let ctx = ForwardContext::new("127.0.0.1:1".parse().unwrap());
/// headers::prepare_request(&mut req, "http://10.0.0.1/".parse().unwrap(), &ctx).unwrap();
/// assert_eq!(req.headers()["x-consumer"], "alice");
/// ```
pub fn strip_request<B>(req: &mut Request<B>) {
    let upgrade = upgrade_protocol(req);
    strip_hop_by_hop(req.headers_mut(), upgrade);
}

/// The host the client addressed: the authority of an absolute-form target
/// (or HTTP/2's `:authority`), which wins over `Host` (RFC 9112 §3.2.2),
/// else the `Host` field.
pub fn client_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(authority) = req.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    req.headers().get(header::HOST).cloned()
}

/// Prepares `req` to be sent to `upstream` (an absolute `http://` URI):
/// strips the hop-by-hop fields (keeping a WebSocket-style upgrade), drops
/// `Expect` (the gateway's server already answered it; hyper's client does
/// not implement it), appends `Via`, `X-Forwarded-For`, `Forwarded` and
/// sets `X-Forwarded-Proto`/`-Host` — keeping incoming ones only when the
/// peer is a trusted proxy — sets `Host` per the context's [`HostPolicy`],
/// and replaces the URI.
///
/// The forwarding headers are set after the hop-by-hop pass, so
/// `Connection: X-Forwarded-For` cannot remove the gateway's own.
///
/// # Errors
///
/// [`ProxyError::InvalidUpstream`] when `upstream` has no scheme or
/// authority.
pub fn prepare_request<B>(
    req: &mut Request<B>,
    upstream: Uri,
    ctx: &ForwardContext,
) -> Result<(), ProxyError> {
    let Some(upstream_authority) = upstream.authority() else {
        return Err(ProxyError::InvalidUpstream {
            reason: "no authority",
        });
    };
    if upstream.scheme().is_none() {
        return Err(ProxyError::InvalidUpstream {
            reason: "no scheme",
        });
    }
    let upstream_host = HeaderValue::from_str(upstream_authority.as_str()).map_err(|_| {
        ProxyError::InvalidUpstream {
            reason: "authority is not a header value",
        }
    })?;
    let original_host = client_host(req);
    strip_request(req);
    let version = req.version();
    let headers = req.headers_mut();
    headers.remove(header::EXPECT);
    set_forwarding(headers, ctx, original_host.as_ref(), version);
    let host = match &ctx.host_policy {
        HostPolicy::Upstream => upstream_host,
        HostPolicy::Preserve => original_host.unwrap_or(upstream_host),
        HostPolicy::Rewrite(value) => value.clone(),
    };
    headers.insert(header::HOST, host);
    *req.uri_mut() = upstream;
    Ok(())
}

/// Prepares an upstream response for the client: strips the hop-by-hop
/// fields (keeping `Upgrade` on a `101 Switching Protocols`) and appends
/// `Via`. Multi-valued fields (three `Set-Cookie`) are left as they are.
pub fn prepare_response<B>(res: &mut Response<B>, ctx: &ForwardContext) {
    let upgrade = if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        wants_upgrade(res.headers())
    } else {
        None
    };
    let version = res.version();
    let headers = res.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    append_value(headers, header::VIA, ctx.via(version));
}

fn set_forwarding(
    headers: &mut HeaderMap,
    ctx: &ForwardContext,
    host: Option<&HeaderValue>,
    version: Version,
) {
    let peer = canonical(ctx.peer.ip());
    let trusted = ctx.trusted.is_trusted(peer);
    if !trusted {
        // A client's claims go; most clients send none, so look first
        // (one pass, no hashing).
        const CLAIMS: [HeaderName; 4] = [
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            header::FORWARDED,
        ];
        let claimed = headers.keys().any(|n| CLAIMS.iter().any(|c| c == n));
        if claimed {
            for name in CLAIMS {
                headers.remove(name);
            }
        }
    }
    append_list(headers, X_FORWARDED_FOR, peer.to_string());
    if !trusted || !headers.contains_key(X_FORWARDED_PROTO) {
        let proto = if ctx.scheme == Scheme::HTTPS {
            HeaderValue::from_static("https")
        } else if ctx.scheme == Scheme::HTTP {
            HeaderValue::from_static("http")
        } else {
            HeaderValue::from_str(ctx.scheme.as_str()).unwrap_or(HeaderValue::from_static("http"))
        };
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    if let Some(host) = host
        && (!trusted || !headers.contains_key(X_FORWARDED_HOST))
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    append_list(
        headers,
        header::FORWARDED,
        forwarded_element(peer, ctx, host),
    );
    append_value(headers, header::VIA, ctx.via(version));
}

/// One RFC 7239 element: `for=…;proto=…;host=…`, with IPv6 addresses and
/// hosts that are not tokens quoted.
fn forwarded_element(peer: IpAddr, ctx: &ForwardContext, host: Option<&HeaderValue>) -> String {
    let mut s = String::with_capacity(64);
    match peer {
        IpAddr::V4(v4) => {
            let _ = write!(s, "for={v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(s, "for=\"[{v6}]\"");
        }
    }
    let _ = write!(s, ";proto={}", ctx.scheme.as_str());
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        if !host.is_empty() && host.bytes().all(is_tchar) {
            let _ = write!(s, ";host={host}");
        } else {
            s.push_str(";host=\"");
            for c in host.chars() {
                if c == '"' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
        }
    }
    s
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `item` to the comma-separated list `name`, joining any existing
/// field lines into one (so upstreams that read only the first line see
/// the whole list). Without existing lines, `item`'s buffer becomes the
/// value as it is (no copy).
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: String) {
    let mut existing = headers.get_all(&name).iter().peekable();
    if existing.peek().is_none() {
        insert_owned(headers, name, item);
        return;
    }
    let mut joined = String::with_capacity(128);
    for v in existing {
        if let Ok(v) = v.to_str() {
            let v = v.trim();
            if !v.is_empty() {
                joined.push_str(v);
                joined.push_str(", ");
            }
        }
    }
    joined.push_str(&item);
    // Should the joined list not be a valid value, the old lines go rather
    // than the list being forwarded without this hop.
    if !insert_owned(headers, name.clone(), joined) {
        insert_owned(headers, name, item);
    }
}

/// [`append_list`] for a ready value (the `Via` entry, shared).
fn append_value(headers: &mut HeaderMap, name: HeaderName, item: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, item);
        return;
    }
    if let Ok(item) = item.to_str() {
        append_list(headers, name, item.to_owned());
    }
}

fn insert_owned(headers: &mut HeaderMap, name: HeaderName, value: String) -> bool {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(value) => {
            headers.insert(name, value);
            true
        }
        Err(_) => false,
    }
}
