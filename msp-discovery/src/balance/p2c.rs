use super::endpoint::nanos;
use super::rng::{AtomicRng, below};
use super::{Balancer, Endpoint};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Power of two choices over peak-EWMA latency, O(1) per pick.
///
/// Two distinct endpoints are drawn at random and the one with the lower
/// cost wins, where cost is the endpoint's peak-EWMA round-trip estimate
/// (decayed towards zero with the time since its last update) times its
/// calls in flight plus one — the load metric of tower's `PeakEwma` and
/// linkerd2-proxy. The estimates are fed by
/// [`EndpointSet::record`](super::EndpointSet::record); without feedback the
/// choice degenerates to least-in-flight of two. An endpoint that has not
/// answered yet costs `default_rtt × in-flight`: zero while idle, so new
/// instances are tried (and measured) at once instead of being starved
/// behind measured ones.
///
/// Unlike `tower::balance::p2c::Balance`, which balances tower *services*
/// (use it with [`discover`](crate::discover)), this picks endpoints, so one
/// HTTP client and its connection pool serve every instance.
///
/// ```
/// use msp_discovery::balance::{Balancer, Endpoint, P2c};
/// use msp_core::Instance;
/// use std::time::Duration;
///
/// let eps = ["127.0.0.1:1", "127.0.0.1:2"]
///     .map(|a| Endpoint::new(Instance::parse("svc", a).unwrap(), Duration::from_millis(1)));
/// let busy = eps[0].start(); // one call in flight on port 1
/// let p2c = P2c::new(eps.to_vec(), Duration::from_secs(10), Some(3));
/// // With two endpoints both are always drawn: the idle one wins.
/// assert_eq!(p2c.pick(None).unwrap().addr().port(), 2);
/// drop(busy);
/// ```
#[derive(Debug)]
pub struct P2c {
    endpoints: Vec<Endpoint>,
    decay_ns: f64,
    rng: Arc<AtomicRng>,
}

impl P2c {
    /// Balances over `endpoints`; `decay` is the peak-EWMA decay window
    /// (tower and linkerd use 10 s); `seed` makes the draws reproducible.
    pub fn new(endpoints: Vec<Endpoint>, decay: Duration, seed: Option<u64>) -> Self {
        Self::with_rng(endpoints, decay, Arc::new(AtomicRng::new(seed)))
    }

    pub(crate) fn with_rng(endpoints: Vec<Endpoint>, decay: Duration, rng: Arc<AtomicRng>) -> Self {
        P2c {
            endpoints,
            decay_ns: nanos(decay).max(1.0),
            rng,
        }
    }
}

impl Balancer for P2c {
    fn pick(&self, _key: Option<&[u8]>) -> Option<Endpoint> {
        let n = self.endpoints.len();
        match n {
            0 => None,
            1 => self.endpoints.first().cloned(),
            _ => {
                let bits = self.rng.next_u64();
                let a = below(bits as u32, n);
                let mut b = below((bits >> 32) as u32, n - 1);
                if b >= a {
                    b += 1;
                }
                let (ea, eb) = (self.endpoints.get(a)?, self.endpoints.get(b)?);
                let now = Instant::now();
                let pick = if eb.p2c_cost(now, self.decay_ns) < ea.p2c_cost(now, self.decay_ns) {
                    eb
                } else {
                    ea
                };
                Some(pick.clone())
            }
        }
    }
}
