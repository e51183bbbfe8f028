//! Trace ids, span ids and trace flags.

use super::ParseError;
use std::fmt;

pub(super) fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseError> {
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return Err(ParseError::Format);
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(ParseError::NotHex),
    };
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// A 16-byte trace id, never all zeros; displayed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A random, non-zero trace id.
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for all zeros.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// An 8-byte span id, never all zeros; displayed as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// A random, non-zero span id.
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 8] = rand::random();
            if bytes != [0; 8] {
                return SpanId(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for all zeros.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The `trace-flags` byte of a `traceparent`.
///
/// Only the flags the specification defines are kept — `sampled` (`01`) and,
/// from Level 2, `random-trace-id` (`02`); the reserved bits are cleared, as
/// vendors must set them to zero.
///
/// ```
/// use msp_core::observe::trace_context::TraceFlags;
///
/// let flags = TraceFlags::new(0xff);
/// assert_eq!(flags, TraceFlags::SAMPLED | TraceFlags::RANDOM);
/// assert!(flags.is_sampled() && flags.is_random());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The `sampled` flag: the caller may have recorded this trace.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// The `random-trace-id` flag (Level 2): at least the right-most 7 bytes
    /// of the trace id are random.
    pub const RANDOM: TraceFlags = TraceFlags(0x02);
    /// No flag set.
    pub const NONE: TraceFlags = TraceFlags(0);

    const KNOWN: u8 = 0x03;

    /// Flags from their byte; reserved bits are cleared.
    pub fn new(bits: u8) -> Self {
        TraceFlags(bits & Self::KNOWN)
    }

    /// The byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED.0 != 0
    }

    /// Whether the `random-trace-id` flag is set.
    pub fn is_random(self) -> bool {
        self.0 & Self::RANDOM.0 != 0
    }
}

impl std::ops::BitOr for TraceFlags {
    type Output = TraceFlags;

    fn bitor(self, rhs: TraceFlags) -> TraceFlags {
        TraceFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}
