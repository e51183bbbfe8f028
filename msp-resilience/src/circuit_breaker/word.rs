//! The breaker's packed state word and the tickets admitted calls carry.

use super::config::Mode;
use super::state::State;

// The state word: bits 0-1 state, bits 2-4 mode, bits 8.. generation. In
// the closed state of the normal mode its low byte is zero, so admission is
// one load and one test.
pub(super) const STATE_MASK: u64 = 0b11;
pub(super) const MODE_SHIFT: u32 = 2;
pub(super) const GEN_SHIFT: u32 = 8;
pub(super) const FAST_MASK: u64 = (1 << GEN_SHIFT) - 1;

pub(super) fn pack(state: State, mode: Mode, generation: u64) -> u64 {
    state.to_bits() | (mode.to_bits() << MODE_SHIFT) | (generation << GEN_SHIFT)
}

pub(super) fn mode_of(word: u64) -> Mode {
    Mode::from_bits((word & FAST_MASK) >> MODE_SHIFT)
}

pub(super) const PROBE_COUNT: u64 = 0xFFFF_FFFF;

/// The high half of [`Probes::issued`] for a state word (or ticket tag) of
/// generation `g`.
#[inline]
pub(super) fn probe_tag(word: u64) -> u64 {
    ((word >> GEN_SHIFT) & PROBE_COUNT) << 32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Recorded in the closed-state window.
    Closed,
    /// A half-open probe.
    Probe,
    /// Counted in metrics only.
    Counted,
    /// Not recorded at all.
    Untracked,
}

impl Kind {
    pub(super) fn bits(self) -> u64 {
        match self {
            Kind::Closed => 0,
            Kind::Probe => 1,
            Kind::Counted => 2,
            Kind::Untracked => 3,
        }
    }

    pub(super) fn from_bits(bits: u64) -> Kind {
        match bits & 0b11 {
            0 => Kind::Closed,
            1 => Kind::Probe,
            2 => Kind::Counted,
            _ => Kind::Untracked,
        }
    }
}

/// What an admitted call carries until its outcome is recorded: two words,
/// so permits move around in registers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    /// The state word's generation bits (`word & !FAST_MASK`) with the
    /// kind in the low bits.
    pub(super) tag: u64,
    /// Nanoseconds since the breaker's base + 1 when the call started, or 0
    /// when slow calls are not measured.
    pub(super) start: u64,
}

impl Ticket {
    #[inline]
    pub(super) fn new(word: u64, kind: Kind, start: u64) -> Self {
        Ticket {
            tag: (word & !FAST_MASK) | kind.bits(),
            start,
        }
    }

    #[inline]
    pub(super) fn kind(&self) -> Kind {
        Kind::from_bits(self.tag)
    }

    /// Whether the state word is still in the generation the call was
    /// admitted in.
    #[inline]
    pub(super) fn current(&self, word: u64) -> bool {
        (word ^ self.tag) >> GEN_SHIFT == 0
    }
}
