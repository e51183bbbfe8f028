//! What a request addresses — its path and its host — checked so that
//! what the policies decide on is exactly what the router sees.
//!
//! Policies match a normalised path, but the inner service (axum, a proxy)
//! routes the raw one. If normalising could change the path's segments,
//! the two could disagree: `/admin/..` normalises to `/` (so a DENY on
//! `/admin/*` would not match) while axum routes it to `/admin/{id}`. So a
//! path whose segments normalisation would change — a `.` or `..` segment
//! (raw or percent-encoded, any case), an empty segment (`//`), an encoded
//! `/` or `\` — is refused before any policy is evaluated, as the gateway
//! refuses it (msp-gateway's path normalisation); only percent-encoded
//! unreserved characters are decoded for matching (`%41` → `A`), which
//! never moves a segment boundary.
//!
//! Likewise the host: axum's `Host` extractor reads the `Host` header,
//! HTTP/2 and absolute-form requests carry a URI authority too. When both
//! are present they must name the same host (case-insensitively, ignoring
//! one trailing `.` and a default port), else the request is refused.

use super::error::MalformedRequest;
use http::header::HOST;
use http::uri::Scheme;
use http::{Request, Uri};

/// Refuses a path whose segments normalisation would change.
///
/// Only origin-form paths (starting with `/`) are checked; `*` and the
/// empty path of an authority-form request have no segments.
pub(super) fn check_path(path: &str) -> Result<(), MalformedRequest> {
    let Some(body) = path.strip_prefix('/') else {
        return Ok(());
    };
    let mut segments = body.split('/').peekable();
    while let Some(seg) = segments.next() {
        if seg.is_empty() {
            if segments.peek().is_some() {
                return Err(MalformedRequest::EmptySegment);
            }
            continue; // a trailing slash
        }
        if is_dot_segment(seg) {
            return Err(MalformedRequest::DotSegment);
        }
        if seg.contains('%') && has_encoded_separator(seg) {
            return Err(MalformedRequest::EncodedSeparator);
        }
    }
    Ok(())
}

/// `.` or `..`, each dot raw or as `%2e` / `%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let mut rest = seg.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1..3].eq_ignore_ascii_case(b"2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// `%2f` or `%5c`, any case.
fn has_encoded_separator(seg: &str) -> bool {
    seg.as_bytes().windows(3).any(|w| {
        w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
    })
}

/// The request's host (no port, one trailing `.` removed) and port: the
/// `Host` header, as axum's `Host` extractor reads it, else the URI's
/// authority. Refused when both are present and name different hosts or
/// ports, or when the `Host` header is repeated or not text.
pub(super) fn host_and_port<B>(
    req: &Request<B>,
) -> Result<(Option<&str>, Option<u16>), MalformedRequest> {
    let uri = req.uri().authority().map(|a| (a.host(), a.port_u16()));
    let mut headers = req.headers().get_all(HOST).iter();
    let header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(value), None) => Some(split_host_port(
            value.to_str().map_err(|_| MalformedRequest::InvalidHost)?,
        )),
        (Some(_), Some(_)) => return Err(MalformedRequest::InvalidHost),
    };
    let (host, port) = match (header, uri) {
        (Some(h), Some(u)) => {
            if !same_host(h.0, u.0) || !same_port(h.1, u.1, req.uri()) {
                return Err(MalformedRequest::ConflictingHost);
            }
            (h.0, h.1.or(u.1))
        }
        (Some(h), None) => h,
        (None, Some(u)) => u,
        (None, None) => return Ok((None, None)),
    };
    Ok((Some(strip_trailing_dot(host)), port))
}

fn strip_trailing_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

fn same_host(a: &str, b: &str) -> bool {
    strip_trailing_dot(a).eq_ignore_ascii_case(strip_trailing_dot(b))
}

/// Equal ports, or one missing and the other the scheme's default (80 or
/// 443 when the URI names no scheme).
fn same_port(a: Option<u16>, b: Option<u16>, uri: &Uri) -> bool {
    let is_default = |p: u16| match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => p == 80,
        Some(s) if *s == Scheme::HTTPS => p == 443,
        _ => p == 80 || p == 443,
    };
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (Some(p), None) | (None, Some(p)) => is_default(p),
        (None, None) => true,
    }
}

/// `host[:port]` or `[v6]:port`. An unparsable port reads as none.
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => (
                &host[..=end],
                host[end + 1..]
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok()),
            ),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_whose_segments_normalisation_would_change_are_refused() {
        for ok in [
            "/",
            "/admin",
            "/admin/",
            "/a/b.c/..d/...",
            "/a%41b",
            "/%2e%2e%2e",
            "/a.%2e.",
            "*",
            "",
            "/%252e%252e",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("/admin/..", MalformedRequest::DotSegment),
            ("/admin/.", MalformedRequest::DotSegment),
            ("/admin/%2e%2e", MalformedRequest::DotSegment),
            ("/admin/%2E%2E/x", MalformedRequest::DotSegment),
            ("/admin/.%2E/x", MalformedRequest::DotSegment),
            ("/%2e", MalformedRequest::DotSegment),
            ("//admin/x", MalformedRequest::EmptySegment),
            ("/admin//x", MalformedRequest::EmptySegment),
            ("/admin%2Fx", MalformedRequest::EncodedSeparator),
            ("/admin%5cx", MalformedRequest::EncodedSeparator),
        ] {
            assert_eq!(check_path(bad), Err(why), "{bad}");
        }
    }
}
