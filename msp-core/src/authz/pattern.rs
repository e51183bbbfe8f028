//! Compiled matchers for the values of a rule: SPIFFE ID, path, host and
//! header-value patterns, and the include / exclude lists they live in.

use crate::identity::{SpiffeId, TrustDomain};
use std::borrow::Cow;

/// A field's values and `not_` values: matches when (no values, or any
/// value matches) and no `not_` value matches.
#[derive(Clone)]
pub(super) struct Set<P> {
    pub(super) include: Vec<P>,
    pub(super) exclude: Vec<P>,
}

impl<P> Set<P> {
    pub(super) fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Compiles both lists with `parse` (told whether the value is a `not_`
    /// one), which reports the offending value.
    pub(super) fn compile<T, E>(
        include: &[T],
        exclude: &[T],
        mut parse: impl FnMut(&T, bool) -> Result<P, E>,
    ) -> Result<Self, E> {
        Ok(Set {
            include: include
                .iter()
                .map(|v| parse(v, false))
                .collect::<Result<_, _>>()?,
            exclude: exclude
                .iter()
                .map(|v| parse(v, true))
                .collect::<Result<_, _>>()?,
        })
    }

    #[inline]
    pub(super) fn matches(&self, mut f: impl FnMut(&P) -> bool) -> bool {
        (self.include.is_empty() || self.include.iter().any(&mut f)) && !self.exclude.iter().any(f)
    }
}

/// A SPIFFE ID pattern: `*`, an exact ID, or `spiffe://td/path/*`.
#[derive(Clone)]
pub(super) enum PrincipalPattern {
    Any,
    Exact(SpiffeId),
    /// `spiffe://td/ns/` for `spiffe://td/ns/*`.
    Prefix(Box<str>),
}

impl PrincipalPattern {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(PrincipalPattern::Any);
        }
        if let Some(base) = s.strip_suffix("/*") {
            if base.contains('*') {
                return Err("'*' is allowed only as the whole last segment".into());
            }
            // `spiffe://shop/*` (any workload of the trust domain) or
            // `spiffe://shop/ns/*`: the base must be a valid ID.
            SpiffeId::new(base).map_err(|e| e.to_string())?;
            return Ok(PrincipalPattern::Prefix(format!("{base}/").into()));
        }
        if s.contains('*') {
            return Err("'*' is allowed only as the whole last segment".into());
        }
        SpiffeId::new(s)
            .map(PrincipalPattern::Exact)
            .map_err(|e| e.to_string())
    }

    #[inline]
    pub(super) fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            PrincipalPattern::Any => true,
            PrincipalPattern::Exact(want) => want.as_str() == id.as_str(),
            PrincipalPattern::Prefix(prefix) => id.as_str().starts_with(&**prefix),
        }
    }
}

pub(super) fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(s).map_err(|e| e.to_string())
}

/// One segment of a path template.
#[derive(Clone)]
pub(super) enum Segment {
    Literal(Box<str>),
    /// `{*}`: exactly one non-empty segment.
    One,
    /// `{**}`: one or more segments (last only).
    Rest,
}

/// A path pattern.
#[derive(Clone)]
pub(super) enum PathPattern {
    Any,
    Exact(Box<str>),
    /// `/payments/` for `/payments/*`.
    Prefix(Box<str>),
    /// `.json` for `*.json`.
    Suffix(Box<str>),
    Template(Box<[Segment]>),
}

impl PathPattern {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(PathPattern::Any);
        }
        if let Some(suffix) = s.strip_prefix('*') {
            if suffix.is_empty() || suffix.contains(['*', '{', '}']) {
                return Err("a suffix pattern is '*' followed by literal text".into());
            }
            return Ok(PathPattern::Suffix(suffix.into()));
        }
        if !s.starts_with('/') {
            return Err("a path starts with '/' (or is '*' or '*suffix')".into());
        }
        if s.contains(['{', '}']) {
            return Self::template(s);
        }
        if let Some(base) = s.strip_suffix("/*") {
            if base.contains('*') {
                return Err("'*' is allowed only as a whole last segment".into());
            }
            return Ok(PathPattern::Prefix(format!("{base}/").into()));
        }
        if s.contains('*') {
            return Err(
                "'*' is allowed only as a whole last segment; use {*} for one segment".into(),
            );
        }
        Ok(PathPattern::Exact(s.into()))
    }

    fn template(s: &str) -> Result<Self, String> {
        let raw: Vec<&str> = s[1..].split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        for (i, seg) in raw.iter().enumerate() {
            segments.push(match *seg {
                "{*}" => Segment::One,
                "{**}" if i + 1 == raw.len() => Segment::Rest,
                "{**}" => return Err("{**} is allowed only as the last segment".into()),
                lit if lit.contains(['{', '}', '*']) => {
                    return Err(format!(
                        "segment {lit:?}: wildcards are whole segments, {{*}} or {{**}}"
                    ));
                }
                lit => Segment::Literal(lit.into()),
            });
        }
        Ok(PathPattern::Template(segments.into()))
    }

    #[inline]
    pub(super) fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => path == &**p,
            PathPattern::Prefix(p) => path.starts_with(&**p),
            PathPattern::Suffix(p) => path.ends_with(&**p),
            PathPattern::Template(segments) => match_template(segments, path),
        }
    }
}

fn match_template(segments: &[Segment], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = rest.split('/');
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Rest => {
                // One or more segments remain, none of them empty.
                let remaining: Vec<&str> = parts.collect();
                return i + 1 == segments.len()
                    && !remaining.is_empty()
                    && remaining.iter().all(|s| !s.is_empty());
            }
            Segment::One => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(lit) => {
                if parts.next() != Some(&**lit) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// A host pattern (stored lower case).
#[derive(Clone)]
pub(super) enum HostPattern {
    Any,
    Exact(Box<str>),
    /// `.example.com` for `*.example.com`.
    Suffix(Box<str>),
}

impl HostPattern {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        let valid = |h: &str| {
            !h.is_empty()
                && h.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
                })
        };
        if let Some(suffix) = s.strip_prefix("*.") {
            if !valid(suffix) {
                return Err("expected *.domain with letters, digits, '.', '-'".into());
            }
            return Ok(HostPattern::Suffix(
                format!(".{}", suffix.to_ascii_lowercase()).into(),
            ));
        }
        if !valid(s) {
            return Err("expected a host name (no port, scheme or path) or *.domain".into());
        }
        Ok(HostPattern::Exact(s.to_ascii_lowercase().into()))
    }

    #[inline]
    pub(super) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

/// A header-value pattern.
#[derive(Clone)]
pub(super) enum ValuePattern {
    Present,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

impl ValuePattern {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(ValuePattern::Present);
        }
        let pattern = if let Some(p) = s.strip_suffix('*') {
            ValuePattern::Prefix(p.into())
        } else if let Some(p) = s.strip_prefix('*') {
            ValuePattern::Suffix(p.into())
        } else {
            ValuePattern::Exact(s.into())
        };
        let inner = match &pattern {
            ValuePattern::Prefix(p) | ValuePattern::Suffix(p) | ValuePattern::Exact(p) => p,
            ValuePattern::Present => return Ok(pattern),
        };
        if inner.contains('*') {
            return Err("'*' is allowed only at the start or the end".into());
        }
        Ok(pattern)
    }

    #[inline]
    pub(super) fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValuePattern::Present => true,
            ValuePattern::Exact(v) => value == v.as_bytes(),
            ValuePattern::Prefix(v) => value.starts_with(v.as_bytes()),
            ValuePattern::Suffix(v) => value.ends_with(v.as_bytes()),
        }
    }
}

/// The path policies see: percent-encoded unreserved characters decoded
/// (RFC 3986 §2.3), repeated slashes merged and dot segments removed
/// (§5.2.4) — what Envoy's `normalize_path` with `merge_slashes` gives, so
/// a path cannot look allowed here and mean something else to a server
/// that normalizes (`/public//../admin` is `/admin`). Borrows when there
/// is nothing to do (the usual case).
pub(super) fn normalize_path(path: &str) -> Cow<'_, str> {
    let dotted = path.split('/').any(|s| s == "." || s == "..");
    if !dotted && !path.contains('%') && !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    Cow::Owned(merge_and_remove_dot_segments(&decoded))
}

fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Not an encoded unreserved character: copy one char as is.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

fn merge_and_remove_dot_segments(path: &str) -> String {
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in body.split('/') {
        // A path ending in `/`, `/.` or `/..` names a directory.
        trailing_slash = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(path.len() + 1);
    result.push('/');
    result.push_str(&out.join("/"));
    if trailing_slash && !out.is_empty() {
        result.push('/');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dot_segments_and_encoded_unreserved_characters() {
        assert!(matches!(normalize_path("/payments/1"), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/payments/../admin"), "/admin");
        assert_eq!(normalize_path("/payments/%2e%2E/admin"), "/admin");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/../../x"), "/x");
        assert_eq!(normalize_path("//admin"), "/admin");
        assert_eq!(normalize_path("/a//b"), "/a/b");
        assert_eq!(normalize_path("/public//../admin"), "/admin");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/."), "/");
        // Reserved characters stay encoded; a broken escape stays as is.
        assert_eq!(normalize_path("/a%2Fb/%41"), "/a%2Fb/A");
        assert_eq!(normalize_path("/a%2"), "/a%2");
        assert_eq!(normalize_path("/é%7e"), "/é~");
    }

    #[test]
    fn path_patterns_match_as_documented() {
        let p = |s| PathPattern::parse(s).expect("valid");
        assert!(p("/payments").matches("/payments"));
        assert!(!p("/payments").matches("/payments/1"));
        assert!(p("/payments/*").matches("/payments/1/refund"));
        assert!(!p("/payments/*").matches("/payments"));
        assert!(p("*.json").matches("/a/b.json"));
        assert!(p("*").matches("/anything"));
        let t = p("/orders/{*}/items");
        assert!(t.matches("/orders/7/items"));
        assert!(!t.matches("/orders//items"));
        assert!(!t.matches("/orders/7/items/1"));
        let r = p("/files/{**}");
        assert!(r.matches("/files/a/b/c"));
        assert!(!r.matches("/files"));
        assert!(!r.matches("/files/"));
        for bad in ["payments", "/pay*ments", "/a/{**}/b", "/a/x{*}", "*{x}"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_and_principal_patterns_match_as_documented() {
        let h = HostPattern::parse("*.Shop.example").expect("valid");
        assert!(h.matches("api.shop.EXAMPLE"));
        assert!(!h.matches("shop.example"));
        assert!(HostPattern::parse("a.example:80/x").is_err());

        let id = |s: &str| SpiffeId::new(s).expect("valid");
        let p = PrincipalPattern::parse("spiffe://shop/ns/*").expect("valid");
        assert!(p.matches(&id("spiffe://shop/ns/a")));
        assert!(!p.matches(&id("spiffe://shop/nsx/a")));
        assert!(!p.matches(&id("spiffe://shop/ns")));
        assert!(PrincipalPattern::parse("spiffe://shop/*/x").is_err());
        assert!(PrincipalPattern::parse("spiffe://Shop/x").is_err());
        assert!(PrincipalPattern::parse("shop/x").is_err());
    }
}
