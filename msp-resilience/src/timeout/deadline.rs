//! Deadlines carried by requests: extensions, the `x-msp-deadline-ms` header
//! and gRPC's `grpc-timeout`.

use http::HeaderValue;
use http::header::CONTENT_TYPE;
use std::time::Duration;
use tokio::time::Instant;

/// The header carrying the remaining time budget of a request, in whole
/// milliseconds, to the next service downstream (msp-core's
/// [`DEADLINE_MS`](msp_core::http::header::DEADLINE_MS)).
pub use msp_core::http::header::DEADLINE_MS as DEADLINE_HEADER;

/// gRPC's deadline header, `grpc-timeout` (msp-core's
/// [`GRPC_TIMEOUT`](msp_core::http::header::GRPC_TIMEOUT)).
pub use msp_core::http::header::GRPC_TIMEOUT as GRPC_TIMEOUT_HEADER;

/// The absolute deadline of a request, as a request extension (msp-core's
/// [`Deadline`](msp_core::time::Deadline), shared by every crate).
///
/// Insert it to cap every [`Timeout`](super::Timeout) and
/// [`Retry`](crate::retry::Retry) the request passes through: the effective
/// deadline of a call is the earliest of the layer's own timeout and this
/// one. [`Timeout`](super::Timeout) inserts it (when propagation is on) so
/// inner layers and handlers can read the overall deadline and pass it on to
/// the requests they make.
pub use msp_core::time::Deadline;

/// Replaces the configured timeout of the next [`Timeout`](super::Timeout)
/// layer for this one request (longer or shorter), as a request extension.
///
/// A [`Deadline`] extension or an incoming deadline header still caps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeoutOverride(pub Duration);

/// A request type that can carry a deadline.
///
/// [`Timeout`](super::Timeout) and [`Retry`](crate::retry::Retry) ask the
/// request for an override and a deadline of its own, and tell it the
/// effective deadline so it can pass it downstream.
/// `http::Request<B>` implements all of it (see the
/// [module docs](super)); for other request types every method has a
/// no-op default, so an empty `impl DeadlineRequest for MyRequest {}` opts
/// in. It is implemented for the primitive and string types used in tests.
pub trait DeadlineRequest {
    /// A per-request replacement for the configured timeout.
    fn timeout_override(&self) -> Option<Duration> {
        None
    }

    /// A deadline carried by the request itself (an extension or, if
    /// `read_headers`, a header written by the caller); it can only
    /// shorten the effective deadline.
    fn deadline(&self, now: Instant, read_headers: bool) -> Option<Instant> {
        let _ = (now, read_headers);
        None
    }

    /// Records the effective deadline in the request (for inner layers and
    /// for the next service downstream).
    fn set_deadline(&mut self, deadline: Instant, now: Instant) {
        let _ = (deadline, now);
    }
}

macro_rules! plain_request {
    ($($t:ty),* $(,)?) => {
        $(impl DeadlineRequest for $t {})*
    };
}

plain_request!(
    (),
    bool,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    String,
    &'static str,
    Vec<u8>,
    bytes::Bytes,
);

impl<B> DeadlineRequest for http::Request<B> {
    fn timeout_override(&self) -> Option<Duration> {
        self.extensions().get::<TimeoutOverride>().map(|o| o.0)
    }

    fn deadline(&self, now: Instant, read_headers: bool) -> Option<Instant> {
        let mut earliest = self.extensions().get::<Deadline>().map(|d| d.0);
        if read_headers {
            let headers = self.headers();
            let from_msp = headers
                .get(&DEADLINE_HEADER)
                .and_then(parse_deadline_ms)
                .and_then(|d| now.checked_add(d));
            let from_grpc = headers
                .get(&GRPC_TIMEOUT_HEADER)
                .and_then(parse_grpc_timeout)
                .and_then(|d| now.checked_add(d));
            for d in [from_msp, from_grpc].into_iter().flatten() {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
            }
        }
        earliest
    }

    fn set_deadline(&mut self, deadline: Instant, now: Instant) {
        let remaining = deadline.saturating_duration_since(now);
        let millis = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
        let grpc = self
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
        let headers = self.headers_mut();
        headers.insert(DEADLINE_HEADER, HeaderValue::from(millis));
        if grpc {
            headers.insert(GRPC_TIMEOUT_HEADER, format_grpc_timeout(remaining));
        }
        self.extensions_mut().insert(Deadline(deadline));
    }
}

/// Parses an `x-msp-deadline-ms` value: ASCII digits, milliseconds.
pub fn parse_deadline_ms(value: &HeaderValue) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().map(Duration::from_millis)
}

/// Parses a gRPC `grpc-timeout` value: at most 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`).
///
/// ```
/// use http::HeaderValue;
/// use msp_resilience::timeout::parse_grpc_timeout;
/// use std::time::Duration;
///
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("250m")), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("2S")), Some(Duration::from_secs(2)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("123456789S")), None);
/// ```
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value, in the finest unit that
/// fits in 8 digits (rounded up, so the callee never gets more time than the
/// caller has).
pub fn format_grpc_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    for (per, unit) in units {
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return HeaderValue::from_str(&format!("{value}{unit}"))
                .unwrap_or_else(|_| HeaderValue::from_static("99999999H"));
        }
    }
    HeaderValue::from_static("99999999H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_round_trips() {
        for d in [
            Duration::from_nanos(5),
            Duration::from_millis(250),
            Duration::from_secs(3),
            Duration::from_secs(100_000),
        ] {
            let v = format_grpc_timeout(d);
            let back = parse_grpc_timeout(&v).expect("parses");
            assert!(back >= d, "{v:?} -> {back:?} < {d:?}");
        }
        assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("5x")), None);
        assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("m")), None);
    }

    #[test]
    fn deadline_ms_rejects_garbage() {
        assert_eq!(
            parse_deadline_ms(&HeaderValue::from_static("150")),
            Some(Duration::from_millis(150))
        );
        assert_eq!(parse_deadline_ms(&HeaderValue::from_static("-1")), None);
        assert_eq!(parse_deadline_ms(&HeaderValue::from_static("1e3")), None);
        assert_eq!(parse_deadline_ms(&HeaderValue::from_static("")), None);
    }
}
