use super::{Balancer, Endpoint};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Round robin: endpoint `i mod n` for the `i`-th pick, one atomic
/// `fetch_add` per pick (O(1)).
///
/// Over `k × n` picks every endpoint is picked exactly `k` times, also when
/// picks come from several threads.
///
/// ```
/// use msp_discovery::balance::{Balancer, Endpoint, RoundRobin};
/// use msp_core::Instance;
/// use std::time::Duration;
///
/// let eps = ["127.0.0.1:1", "127.0.0.1:2"]
///     .map(|a| Endpoint::new(Instance::parse("svc", a).unwrap(), Duration::from_millis(1)));
/// let rr = RoundRobin::new(eps.to_vec());
/// let ports: Vec<u16> = (0..4).map(|_| rr.pick(None).unwrap().addr().port()).collect();
/// assert_eq!(ports, [1, 2, 1, 2]);
/// ```
#[derive(Debug)]
pub struct RoundRobin {
    endpoints: Vec<Endpoint>,
    next: Arc<AtomicUsize>,
}

impl RoundRobin {
    /// Balances over `endpoints`, starting with the first.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Self::with_counter(endpoints, Arc::new(AtomicUsize::new(0)))
    }

    /// Shares the position with an earlier balancer, so a rebuilt set
    /// continues the rotation instead of restarting at the first endpoint.
    pub(crate) fn with_counter(endpoints: Vec<Endpoint>, next: Arc<AtomicUsize>) -> Self {
        RoundRobin { endpoints, next }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, _key: Option<&[u8]>) -> Option<Endpoint> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.endpoints.get(i).cloned()
    }
}
