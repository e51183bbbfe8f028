//! Request path normalisation: what is matched and forwarded is a path
//! without dot segments, encoded separators or repeated slashes.

use super::RewriteError;
use std::borrow::Cow;

/// Normalises an origin-form request path (RFC 3986 §6.2.2):
///
/// - percent-encoded unreserved characters are decoded (`%61` → `a`,
///   `%2e` → `.`, `%7E` → `~`), other escapes are kept with upper-case hex;
/// - repeated slashes are merged (`/a//b` → `/a/b`);
/// - rejected: a `.` or `..` segment, raw or encoded (`%2e%2e`), an encoded
///   `/` or `\` (`%2f`, `%5c`), a raw `\`, control characters (`%00`…),
///   malformed escapes (`%zz`), escapes that do not decode to UTF-8
///   (`%ff`), a path not starting with `/`.
///
/// So a route's prefix is a real prefix of what the upstream sees: no
/// upstream decoding or dot-segment removal can turn a path matched under
/// `/api/public/` into one under `/api/admin/`. A double-encoded `%252e` stays
/// `%252e` (the upstream decodes it once, to the literal text `%2e`).
/// Borrowed when nothing changes (no allocation).
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, RewriteError> {
    if !raw.starts_with('/') {
        return Err(RewriteError::NotOriginForm);
    }
    if is_clean(raw)? {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let segments: Vec<&str> = raw[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut decoded = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() && i != last {
            continue; // a repeated slash
        }
        out.push('/');
        let start = out.len();
        decoded.clear();
        let mut high = false;
        let mut rest = *seg;
        while let Some(c) = rest.chars().next() {
            if c == '%' {
                let b = rest.as_bytes();
                let v = match (b.get(1).and_then(hex), b.get(2).and_then(hex)) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return Err(RewriteError::InvalidPercentEncoding),
                };
                check_byte(v, true)?;
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(v >> 4)]));
                    out.push(char::from(HEX[usize::from(v & 15)]));
                }
                high |= v >= 0x80;
                decoded.push(v);
                rest = &rest[3..];
            } else {
                if let Ok(b) = u8::try_from(c) {
                    check_byte(b, false)?;
                }
                out.push(c);
                let mut buf = [0; 4];
                decoded.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
        let text = &out[start..];
        if text == "." || text == ".." {
            return Err(RewriteError::DotSegment);
        }
        if high && std::str::from_utf8(&decoded).is_err() {
            return Err(RewriteError::InvalidUtf8);
        }
    }
    Ok(Cow::Owned(out))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_byte(b: u8, encoded: bool) -> Result<(), RewriteError> {
    match b {
        b'/' if encoded => Err(RewriteError::EncodedSeparator),
        b'\\' => Err(RewriteError::EncodedSeparator),
        0..=0x1f | 0x7f => Err(RewriteError::ControlCharacter),
        _ => Ok(()),
    }
}

/// `Ok(true)` when `raw` needs no change; errors found on the way are final.
fn is_clean(raw: &str) -> Result<bool, RewriteError> {
    let segments = raw[1..].split('/');
    let mut clean = true;
    let mut prev_empty = false;
    for seg in segments {
        if prev_empty {
            clean = false; // an empty segment that was not the last
        }
        prev_empty = seg.is_empty();
        if seg == "." || seg == ".." {
            return Err(RewriteError::DotSegment);
        }
        for &c in seg.as_bytes() {
            if c == b'%' {
                clean = false;
            } else {
                check_byte(c, false)?;
            }
        }
    }
    Ok(clean)
}
