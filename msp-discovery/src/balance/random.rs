use super::rng::{AtomicRng, below};
use super::{Balancer, Endpoint};
use std::sync::Arc;

/// Uniform random choice, O(1) per pick.
///
/// ```
/// use msp_discovery::balance::{Balancer, Endpoint, Random};
/// use msp_core::Instance;
/// use std::time::Duration;
///
/// let eps = ["127.0.0.1:1", "127.0.0.1:2"]
///     .map(|a| Endpoint::new(Instance::parse("svc", a).unwrap(), Duration::from_millis(1)));
/// let random = Random::new(eps.to_vec(), Some(42)); // seeded: reproducible
/// assert!(random.pick(None).is_some());
/// ```
#[derive(Debug)]
pub struct Random {
    endpoints: Vec<Endpoint>,
    rng: Arc<AtomicRng>,
}

impl Random {
    /// Balances over `endpoints`; `seed` makes the picks reproducible.
    pub fn new(endpoints: Vec<Endpoint>, seed: Option<u64>) -> Self {
        Self::with_rng(endpoints, Arc::new(AtomicRng::new(seed)))
    }

    pub(crate) fn with_rng(endpoints: Vec<Endpoint>, rng: Arc<AtomicRng>) -> Self {
        Random { endpoints, rng }
    }
}

impl Balancer for Random {
    fn pick(&self, _key: Option<&[u8]>) -> Option<Endpoint> {
        match self.endpoints.len() {
            0 => None,
            n => self
                .endpoints
                .get(below(self.rng.next_u64() as u32, n))
                .cloned(),
        }
    }
}

/// Weighted random choice by [`Instance::weight`](msp_core::Instance::weight),
/// O(1) per pick with Vose's alias method (O(n) to build).
///
/// An endpoint of weight `w` gets `w / Σw` of the picks.
///
/// ```
/// use msp_discovery::balance::{Balancer, Endpoint, Weighted};
/// use msp_core::{Instance, ServiceName};
/// use std::time::Duration;
///
/// let svc = ServiceName::new("svc")?;
/// let heavy = Instance::builder(svc.clone(), "127.0.0.1:1".parse()?).weight(3).build()?;
/// let light = Instance::builder(svc, "127.0.0.1:2".parse()?).weight(1).build()?;
/// let w = Weighted::new(
///     vec![Endpoint::new(heavy, Duration::ZERO), Endpoint::new(light, Duration::ZERO)],
///     Some(1),
/// );
/// let to_heavy = (0..10_000).filter(|_| w.pick(None).unwrap().addr().port() == 1).count();
/// assert!((7_000..8_000).contains(&to_heavy)); // about 75 %
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Weighted {
    endpoints: Vec<Endpoint>,
    /// Column `i` keeps `i` when the coin (32 random bits) is below
    /// `threshold[i]`, else goes to `alias[i]`.
    threshold: Vec<u64>,
    alias: Vec<u32>,
    rng: Arc<AtomicRng>,
}

impl Weighted {
    /// Balances over `endpoints` by weight; `seed` makes picks reproducible.
    pub fn new(endpoints: Vec<Endpoint>, seed: Option<u64>) -> Self {
        Self::with_rng(endpoints, Arc::new(AtomicRng::new(seed)))
    }

    pub(crate) fn with_rng(endpoints: Vec<Endpoint>, rng: Arc<AtomicRng>) -> Self {
        let (threshold, alias) = alias_table(&endpoints);
        Weighted {
            endpoints,
            threshold,
            alias,
            rng,
        }
    }
}

/// Vose's alias method, in exact integer arithmetic: each weight is scaled
/// by `n`, so the average column holds exactly `total`.
fn alias_table(endpoints: &[Endpoint]) -> (Vec<u64>, Vec<u32>) {
    let n = endpoints.len();
    let total: u128 = endpoints
        .iter()
        .map(|e| u128::from(e.instance().weight()))
        .sum();
    let mut threshold = vec![1u64 << 32; n];
    let mut alias: Vec<u32> = (0..n as u32).collect();
    if n == 0 || total == 0 {
        return (threshold, alias);
    }
    let mut scaled: Vec<u128> = endpoints
        .iter()
        .map(|e| u128::from(e.instance().weight()) * n as u128)
        .collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < total);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        threshold[s] = ((scaled[s] << 32) / total) as u64;
        alias[s] = l as u32;
        scaled[l] -= total - scaled[s];
        if scaled[l] < total {
            large.pop();
            small.push(l);
        }
    }
    // Whatever remains holds exactly `total` (up to nothing: integer math).
    for i in small.into_iter().chain(large) {
        threshold[i] = 1 << 32;
    }
    (threshold, alias)
}

impl Balancer for Weighted {
    fn pick(&self, _key: Option<&[u8]>) -> Option<Endpoint> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let bits = self.rng.next_u64();
        let column = below(bits as u32, n);
        let coin = bits >> 32;
        let i = if coin < self.threshold[column] {
            column
        } else {
            self.alias[column] as usize
        };
        self.endpoints.get(i).cloned()
    }
}
