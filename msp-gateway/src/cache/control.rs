//! [`CacheControl`]: the `Cache-Control` header (RFC 9111 §5.2) parsed
//! as a list of directives, never compared as one string.

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// `delta-seconds` beyond this are taken as this (RFC 9111 §1.2.2).
const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// The directives of every `Cache-Control` field of a message, combined.
///
/// Directive names are case-insensitive, values may be tokens or quoted
/// strings (`private="Set-Cookie"`, `max-age="60"`), and several fields
/// count as one comma-separated list. An invalid or repeated `max-age` /
/// `s-maxage` keeps its most conservative reading: an unparsable value is
/// `0` (stale), a repeated one keeps the smallest. Unknown directives are
/// ignored.
///
/// ```
/// use http::HeaderMap;
/// use msp_gateway::cache::CacheControl;
///
/// let mut headers = HeaderMap::new();
/// headers.append("cache-control", "Public, MAX-AGE=\"60\"".parse()?);
/// headers.append("cache-control", "private=\"set-cookie, x-a\", s-maxage=30".parse()?);
/// let cc = CacheControl::from_headers(&headers);
/// assert!(cc.public && cc.private && !cc.no_store);
/// assert_eq!((cc.max_age, cc.s_maxage), (Some(60), Some(30)));
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `no-cache` (with or without field names): here, never stored.
    pub no_cache: bool,
    /// `private` (with or without field names): never stored by a shared cache.
    pub private: bool,
    /// `public`: storable even for a request with `Authorization`.
    pub public: bool,
    /// `max-age`, in seconds.
    pub max_age: Option<u64>,
    /// `s-maxage` (shared caches), in seconds.
    pub s_maxage: Option<u64>,
}

impl CacheControl {
    /// The directives of every `Cache-Control` field in `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            cc.add(value.as_bytes());
        }
        cc
    }

    /// Parses one field value (a comma-separated list) into `self`.
    fn add(&mut self, field: &[u8]) {
        let mut rest = field;
        while !rest.is_empty() {
            let (directive, tail) = next_directive(rest);
            rest = tail;
            let (name, value) = match directive.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    trim(&directive[..eq]),
                    Some(unquote(trim(&directive[eq + 1..]))),
                ),
                None => (trim(directive), None),
            };
            self.apply(name, value);
        }
    }

    fn apply(&mut self, name: &[u8], value: Option<Vec<u8>>) {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if is("no-store") {
            self.no_store = true;
        } else if is("no-cache") {
            self.no_cache = true;
        } else if is("private") {
            self.private = true;
        } else if is("public") {
            self.public = true;
        } else if is("max-age") {
            self.max_age = Some(merge(self.max_age, seconds(value.as_deref())));
        } else if is("s-maxage") {
            self.s_maxage = Some(merge(self.s_maxage, seconds(value.as_deref())));
        }
    }

    /// The freshness lifetime a shared cache gives the response:
    /// `s-maxage`, else `max-age`, else `default`.
    pub fn freshness(&self, default: Option<u64>) -> Option<u64> {
        self.s_maxage.or(self.max_age).or(default)
    }
}

/// The first directive of `list` (up to a comma outside a quoted string)
/// and the rest after that comma.
fn next_directive(list: &[u8]) -> (&[u8], &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in list.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b',' && !quoted {
            return (&list[..i], &list[i + 1..]);
        }
    }
    (list, &[])
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A token as is; a quoted string without its quotes and escapes.
fn unquote(v: &[u8]) -> Vec<u8> {
    let Some(inner) = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")) else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if !escaped && b == b'\\' {
            escaped = true;
        } else {
            out.push(b);
            escaped = false;
        }
    }
    out
}

/// `delta-seconds`; anything else (missing, empty, signed, not digits) is
/// `0`, so the response counts as stale.
fn seconds(value: Option<&[u8]>) -> u64 {
    match value {
        Some(v) if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => {
            v.iter().fold(0u64, |acc, &d| {
                acc.saturating_mul(10)
                    .saturating_add(u64::from(d - b'0'))
                    .min(DELTA_SECONDS_MAX)
            })
        }
        _ => 0,
    }
}

fn merge(previous: Option<u64>, next: u64) -> u64 {
    previous.map_or(next, |p| p.min(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(values: &[&'static str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, http::HeaderValue::from_static(v));
        }
        CacheControl::from_headers(&h)
    }

    #[test]
    fn directives_are_a_list_in_any_case_across_fields() {
        let c = cc(&["public", "No-Store , MAX-age=5"]);
        assert!(c.public && c.no_store && !c.no_cache && !c.private);
        assert_eq!(c.max_age, Some(5));
        // Not a substring match: `no-store` inside a quoted value is no directive.
        let c = cc(&[r#"x-ext="no-store, private", max-age=9"#]);
        assert!(!c.no_store && !c.private);
        assert_eq!(c.max_age, Some(9));
        assert!(!cc(&["no-storex, xprivate"]).no_store);
        assert!(!cc(&["no-storex, xprivate"]).private);
    }

    #[test]
    fn quoted_values_escapes_and_field_name_lists() {
        let c = cc(&[r#"private="set-cookie, x-a", no-cache="a\"b,c", s-maxage="30""#]);
        assert!(c.private && c.no_cache);
        assert_eq!(c.s_maxage, Some(30));
        assert_eq!(unquote(br#""a\"b""#), b"a\"b");
    }

    #[test]
    fn bad_or_repeated_ages_are_conservative() {
        assert_eq!(cc(&["max-age=abc"]).max_age, Some(0));
        assert_eq!(cc(&["max-age=-1"]).max_age, Some(0));
        assert_eq!(cc(&["max-age"]).max_age, Some(0));
        assert_eq!(cc(&["max-age=60, max-age=10"]).max_age, Some(10));
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(cc(&["max-age=7"]).freshness(Some(300)), Some(7));
        assert_eq!(cc(&["max-age=7, s-maxage=3"]).freshness(None), Some(3));
        assert_eq!(cc(&[""]).freshness(Some(300)), Some(300));
        assert_eq!(cc(&[",,, ,"]), CacheControl::default());
    }
}
