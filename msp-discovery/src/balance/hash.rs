use super::rng::{AtomicRng, below, hash64};
use super::{Balancer, Endpoint};
use std::sync::Arc;

/// Consistent hashing by request key: a ring of virtual nodes, O(log n)
/// per pick (binary search), for sticky sessions and cache affinity.
///
/// Each endpoint places `vnodes × weight` points on a 64-bit ring, at
/// stable hashes of its instance id; a key goes to the first point at or
/// after the key's hash. The same key keeps going to the same endpoint while
/// it is available, and removing one endpoint only moves the keys that were
/// on it. Hashes are stable across processes (FNV-1a + MurmurHash3
/// finaliser), so separate clients agree. A pick without a key falls back
/// to a uniform random endpoint.
///
/// ```
/// use msp_discovery::balance::{Balancer, ConsistentHash, Endpoint};
/// use msp_core::Instance;
/// use std::time::Duration;
///
/// let eps: Vec<_> = (1..=3)
///     .map(|p| Endpoint::new(Instance::parse("svc", &format!("127.0.0.1:{p}")).unwrap(), Duration::ZERO))
///     .collect();
/// let ring = ConsistentHash::new(eps, 128, None);
/// let first = ring.pick(Some(b"user-42")).unwrap();
/// assert!(ring.pick(Some(b"user-42")).unwrap().same(&first)); // sticky
/// ```
#[derive(Debug)]
pub struct ConsistentHash {
    endpoints: Vec<Endpoint>,
    /// Sorted `(point, endpoint index)`.
    ring: Vec<(u64, u32)>,
    rng: Arc<AtomicRng>,
}

/// Upper bound on ring points, so a large weight cannot blow up memory.
const MAX_POINTS: usize = 1 << 24;

impl ConsistentHash {
    /// Builds the ring with `vnodes` points per unit of weight (at least 1);
    /// `seed` only affects picks without a key.
    pub fn new(endpoints: Vec<Endpoint>, vnodes: u32, seed: Option<u64>) -> Self {
        Self::with_rng(endpoints, vnodes, Arc::new(AtomicRng::new(seed)))
    }

    pub(crate) fn with_rng(endpoints: Vec<Endpoint>, vnodes: u32, rng: Arc<AtomicRng>) -> Self {
        let vnodes = vnodes.max(1) as usize;
        let total: usize = endpoints
            .iter()
            .map(|e| vnodes.saturating_mul(e.instance().weight() as usize))
            .fold(0usize, usize::saturating_add);
        // Scale every endpoint down alike if the ring would be too large.
        let scale = if total > MAX_POINTS {
            MAX_POINTS as f64 / total as f64
        } else {
            1.0
        };
        let mut ring = Vec::with_capacity(total.min(MAX_POINTS));
        for (idx, e) in endpoints.iter().enumerate() {
            let points = vnodes.saturating_mul(e.instance().weight() as usize);
            let points = ((points as f64 * scale) as usize).max(1);
            let id = e.id().as_str().as_bytes();
            for v in 0..points as u32 {
                ring.push((hash64(&[id, b"#", &v.to_le_bytes()]), idx as u32));
            }
        }
        ring.sort_unstable();
        ConsistentHash {
            endpoints,
            ring,
            rng,
        }
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, key: Option<&[u8]>) -> Option<Endpoint> {
        if self.endpoints.is_empty() {
            return None;
        }
        let Some(key) = key else {
            let i = below(self.rng.next_u64() as u32, self.endpoints.len());
            return self.endpoints.get(i).cloned();
        };
        let h = hash64(&[key]);
        let at = self.ring.partition_point(|&(p, _)| p < h);
        let (_, idx) = self.ring.get(at).or_else(|| self.ring.first())?;
        self.endpoints.get(*idx as usize).cloned()
    }
}
