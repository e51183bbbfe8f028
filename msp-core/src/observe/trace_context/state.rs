//! The `tracestate` list: vendor-specific `key=value` members.

use std::fmt;
use std::sync::Arc;

/// The vendor-specific `tracestate` list, carried along with a trace.
///
/// Parsing follows the [W3C Trace Context] recommendation and the key grammar
/// of its current editors' draft:
///
/// - the value is a comma-separated list; spaces and tabs around members are
///   optional whitespace, and empty members are allowed (and dropped);
/// - a member is `key=value`. A key starts with a lowercase letter or a digit
///   and continues with up to 255 of `a-z 0-9 _ - * / @` (so `vendor@tenant`
///   keys, and `foo@`, `foo@@bar` too, are keys; `@foo` is not). A value is
///   1 to 256 printable ASCII characters other than `,` and `=`, not ending
///   in a space; its leading spaces are kept;
/// - a malformed member, or more than [`MAX_MEMBERS`](Self::MAX_MEMBERS)
///   distinct members, makes the list unparseable: it is discarded as a whole
///   (what the W3C test suite checks at strict level 2 — a vendor cannot
///   tell where a garbled list really starts and ends);
/// - of members sharing a key, the first (left-most, most recent) is kept and
///   the others are dropped, as the specification lets vendors do;
/// - a list longer than [`MAX_LEN`](Self::MAX_LEN) characters loses whole
///   members: first those longer than 128 characters, then members from the
///   end (the oldest ones), as the specification asks.
///
/// The list is immutable and cheap to clone; [`with_member`](Self::with_member)
/// and [`without_member`](Self::without_member) make modified copies with the
/// specification's mutation rules.
///
/// ```
/// use msp_core::observe::trace_context::TraceState;
///
/// let state = TraceState::parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,rojo=old")
///     .expect("valid");
/// assert_eq!(state.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
///
/// // A new or updated member goes to the left.
/// let state = state.with_member("congo", "ucfJifl5GOE")?;
/// assert_eq!(state.as_str(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
///
/// // A malformed member discards the whole list.
/// assert!(TraceState::parse("@foo=1,bar=2").is_none());
/// # Ok::<(), msp_core::observe::trace_context::InvalidMember>(())
/// ```
///
/// [W3C Trace Context]: https://www.w3.org/TR/trace-context/
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TraceState(Option<Arc<str>>);

/// A `key=value` pair that is not a valid `tracestate` member
/// ([`TraceState::with_member`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid tracestate member (key or value outside the W3C grammar)")]
pub struct InvalidMember {
    _priv: (),
}

/// The longest key: 256 characters.
const MAX_KEY_LEN: usize = 256;
/// The longest value: 256 characters.
const MAX_VALUE_LEN: usize = 256;
/// Members longer than this are the first to go when a list is too long.
const LARGE_MEMBER: usize = 128;

impl TraceState {
    /// The most members a list may have (the specification's limit).
    pub const MAX_MEMBERS: usize = 32;
    /// The most characters carried (the specification asks vendors to
    /// propagate at least 512); longer lists lose whole members.
    pub const MAX_LEN: usize = 512;

    /// The empty list.
    pub fn empty() -> Self {
        TraceState(None)
    }

    /// Parses a `tracestate` value (several header lines joined with `,`);
    /// `None` when it is malformed. See the [type docs](Self) for the rules.
    pub fn parse(value: &str) -> Option<Self> {
        let mut members: Vec<(&str, &str)> = Vec::new();
        for member in value.split(',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue; // empty and whitespace-only members are allowed
            }
            let (key, val) = member.split_once('=')?;
            if !valid_key(key) || !valid_value(val) {
                return None;
            }
            if members.iter().any(|&(k, _)| k == key) {
                continue; // a duplicated key: the first one is kept
            }
            members.push((key, val));
            if members.len() > Self::MAX_MEMBERS {
                return None;
            }
        }
        Some(Self::from_members(members))
    }

    fn from_members(mut members: Vec<(&str, &str)>) -> Self {
        let member_len = |&(k, v): &(&str, &str)| k.len() + 1 + v.len();
        let total = |m: &[(&str, &str)]| {
            m.iter().map(member_len).sum::<usize>() + m.len().saturating_sub(1)
        };
        // Too long: large members go first (right-most first), then the
        // right-most members.
        while total(&members) > Self::MAX_LEN {
            match members.iter().rposition(|m| member_len(m) > LARGE_MEMBER) {
                Some(i) => {
                    members.remove(i);
                }
                None => break,
            }
        }
        while total(&members) > Self::MAX_LEN {
            members.pop();
        }
        if members.is_empty() {
            return TraceState(None);
        }
        let mut out = String::with_capacity(total(&members));
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        TraceState(Some(out.into()))
    }

    /// The list as a header value (empty string for the empty list).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// Whether the list has no member.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The members, left (most recent) to right.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.as_str()
            .split(',')
            .filter_map(|member| member.split_once('='))
    }

    /// The value of `key`, if the list has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|&(k, _)| k == key).map(|(_, v)| v)
    }

    /// This list with `key=value` added at the beginning (left), as the
    /// specification asks for a new or updated member: a member with the
    /// same key is removed, and the right-most member is dropped when the
    /// list would exceed [`MAX_MEMBERS`](Self::MAX_MEMBERS) (then the
    /// length limit applies as in [`parse`](Self::parse)).
    pub fn with_member(&self, key: &str, value: &str) -> Result<Self, InvalidMember> {
        if !valid_key(key) || !valid_value(value) {
            return Err(InvalidMember { _priv: () });
        }
        let mut members = Vec::with_capacity(Self::MAX_MEMBERS);
        members.push((key, value));
        members.extend(self.iter().filter(|&(k, _)| k != key));
        members.truncate(Self::MAX_MEMBERS);
        Ok(Self::from_members(members))
    }

    /// This list without the member `key` (if it had one).
    #[must_use]
    pub fn without_member(&self, key: &str) -> Self {
        Self::from_members(self.iter().filter(|&(k, _)| k != key).collect())
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceState({:?})", self.as_str())
    }
}

/// Strips optional whitespace (spaces and horizontal tabs).
pub(super) fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`,
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    let Some((&first, rest)) = b.split_first() else {
        return false;
    };
    b.len() <= MAX_KEY_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && rest.iter().all(|&c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

/// `value = 0*255(chr) nblk-chr`, `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`,
/// `chr = %x20 / nblk-chr`.
fn valid_value(val: &str) -> bool {
    let b = val.as_bytes();
    let printable = |c: u8| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=';
    !b.is_empty()
        && b.len() <= MAX_VALUE_LEN
        && b.iter().all(|&c| printable(c))
        && b.last() != Some(&b' ')
}
