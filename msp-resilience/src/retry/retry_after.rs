//! Parsing `Retry-After` (RFC 9110 §10.2.3).

use http::HeaderValue;
use std::time::{Duration, SystemTime};

/// How long a `Retry-After` value asks to wait, as of `now`: delta-seconds
/// (`"120"`) or an HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`; a date in
/// the past means no wait). `None` if the value is neither.
///
/// ```
/// use http::HeaderValue;
/// use msp_resilience::retry::retry_after;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 07:26:40 GMT
/// assert_eq!(retry_after(&HeaderValue::from_static("3"), now), Some(Duration::from_secs(3)));
/// assert_eq!(
///     retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"), now),
///     Some(Duration::from_secs(80)),
/// );
/// assert_eq!(retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values; the policy's maximum rejects them anyway.
        return Some(Duration::from_secs(s.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
