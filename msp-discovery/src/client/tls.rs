//! mTLS for the [`DiscoveryClient`](super::DiscoveryClient) (feature
//! `tls`): one pooled hyper-util client per expected server identity, so a
//! pooled connection is never reused for a target expecting another
//! identity (hyper-util keys its pool by scheme and authority only).

use crate::balance::Endpoint;
use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_core::ServiceName;
use msp_core::identity::SpiffeId;
use msp_core::tls::{ExpectedIdentity, MtlsConnector, WorkloadIdentity};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The instance metadata key holding the SPIFFE ID (or trust domain,
/// `spiffe://shop`) the client expects an instance to present, when no
/// identity is configured for its service.
pub const SPIFFE_ID_METADATA: &str = "spiffe_id";

/// How the pooled clients are built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_host: usize,
}

/// The mTLS side of a discovery client.
pub(crate) struct TlsClients<B> {
    identity: WorkloadIdentity,
    configured: HashMap<ServiceName, ExpectedIdentity>,
    pool: PoolSettings,
    clients: ArcSwap<HashMap<ExpectedIdentity, Client<MtlsConnector, B>>>,
    create: Mutex<()>,
}

impl<B> TlsClients<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<msp_core::BoxError>,
{
    pub(crate) fn new(
        identity: WorkloadIdentity,
        configured: HashMap<ServiceName, ExpectedIdentity>,
        pool: PoolSettings,
    ) -> Self {
        Self {
            identity,
            configured,
            pool,
            clients: ArcSwap::from_pointee(HashMap::new()),
            create: Mutex::new(()),
        }
    }

    /// The identity `ep` must present: configured for its service, else
    /// from its metadata, else `spiffe://{our trust domain}/{service}`.
    pub(crate) fn expected_for(&self, ep: &Endpoint) -> Result<ExpectedIdentity, String> {
        let instance = ep.instance();
        if let Some(expected) = self.configured.get(instance.service()) {
            return Ok(expected.clone());
        }
        if let Some(raw) = instance.metadata().get(SPIFFE_ID_METADATA) {
            return raw
                .parse()
                .map_err(|e| format!("instance metadata {SPIFFE_ID_METADATA}={raw:?}: {e}"));
        }
        let own = self.identity.spiffe_id().trust_domain();
        SpiffeId::from_parts(&own, instance.service().as_str())
            .map(ExpectedIdentity::Exact)
            .map_err(|e| e.to_string())
    }

    /// The pooled client for connections to servers that are `expected`.
    pub(crate) fn client(
        &self,
        expected: ExpectedIdentity,
    ) -> Result<Client<MtlsConnector, B>, String> {
        if let Some(c) = self.clients.load().get(&expected) {
            return Ok(c.clone());
        }
        let _guard = self
            .create
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = self.clients.load().get(&expected) {
            return Ok(c.clone());
        }
        let connector = MtlsConnector::builder(&self.identity, expected.clone())
            .connect_timeout(self.pool.connect_timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool.idle_timeout)
            .pool_max_idle_per_host(self.pool.max_idle_per_host)
            .build(connector);
        let mut map = HashMap::clone(&self.clients.load());
        map.insert(expected, client.clone());
        self.clients.store(Arc::new(map));
        Ok(client)
    }
}
