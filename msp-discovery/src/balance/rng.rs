//! A lock-free, seedable random source for picks.
//!
//! `pick(&self)` is called concurrently from many tasks, so the generator
//! cannot take `&mut self`. SplitMix64 over an atomic counter gives each
//! caller a distinct, well-mixed 64-bit value with one `fetch_add`; a seed
//! makes the sequence reproducible in single-threaded tests.

use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub(crate) struct AtomicRng {
    state: AtomicU64,
}

impl AtomicRng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(rand::random);
        AtomicRng {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Maps 32 random bits uniformly onto `0..n` (Lemire's multiply-shift; the
/// bias is below `n / 2^32`, negligible for instance counts).
pub(crate) fn below(bits: u32, n: usize) -> usize {
    ((u64::from(bits) * n as u64) >> 32) as usize
}

/// A stable 64-bit hash (FNV-1a, then the MurmurHash3 finaliser for
/// avalanche). Stable across processes and Rust versions, so several
/// clients hashing the same key agree on the endpoint.
pub(crate) fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat() {
        let a = AtomicRng::new(Some(7));
        let b = AtomicRng::new(Some(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range() {
        for n in [1usize, 2, 3, 10, 1000] {
            assert!(below(u32::MAX, n) < n);
            assert_eq!(below(0, n), 0);
        }
    }
}
