//! mTLS for the [`DiscoveryClient`](super::DiscoveryClient) (feature
//! `tls`): which server identity each instance must prove, and one pooled
//! hyper-util client per expected identity, so a pooled connection is never
//! reused for a target expecting another identity (hyper-util keys its pool
//! by scheme and authority only).

use super::DiscoveryClientBuilder;
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

/// The instance metadata key holding the SPIFFE ID of the workload an
/// instance claims to be. Read only by a client built with
/// [`trust_registry_identities(true)`](DiscoveryClientBuilder::trust_registry_identities).
pub const SPIFFE_ID_METADATA: &str = "spiffe_id";

/// How many expected identities get a pooled client of their own. Without
/// [`trust_registry_identities`](DiscoveryClientBuilder::trust_registry_identities)
/// there is one per configured identity and one per service called, so the
/// bound is only reached by a client calling that many services; beyond it
/// a request gets an unpooled client (a new connection each time) rather
/// than growing the map.
pub(crate) const MAX_POOLED_IDENTITIES: usize = 1024;

/// The mTLS settings a [`DiscoveryClientBuilder`] collects.
#[derive(Default)]
pub(crate) struct TlsSettings {
    identity: Option<WorkloadIdentity>,
    expected: HashMap<ServiceName, ExpectedIdentity>,
    trust_registry: bool,
}

impl TlsSettings {
    /// The clients, when a workload identity was given.
    pub(crate) fn into_clients<B>(self, pool: PoolSettings) -> Option<TlsClients<B>> {
        Some(TlsClients {
            identity: self.identity?,
            configured: self.expected,
            trust_registry: self.trust_registry,
            pool,
            clients: ArcSwap::from_pointee(HashMap::new()),
            create: Mutex::new(()),
        })
    }
}

impl DiscoveryClientBuilder {
    /// Speaks mutual TLS to every instance, presenting `identity` (feature
    /// `tls`). `http` and `https` request URIs both go over mTLS.
    ///
    /// An instance of `service` must prove the identity configured for the
    /// service ([`expect_identity`](Self::expect_identity)), else
    /// `spiffe://{own trust domain}/{service}`. What the registry says about
    /// an instance is not trusted unless
    /// [`trust_registry_identities`](Self::trust_registry_identities) is on.
    ///
    /// ```
    /// # use msp_discovery::{client::DiscoveryClient, registry::MemoryRegistry};
    /// use msp_core::tls::{dev::DevCa, WorkloadIdentity};
    ///
    /// let ca = DevCa::new("shop".parse()?)?;
    /// let cert = ca.issue("order-service")?;
    /// let identity = WorkloadIdentity::from_pem(
    ///     cert.cert_pem().as_bytes(),
    ///     cert.key_pem().as_bytes(),
    ///     ca.cert_pem().as_bytes(),
    /// )?;
    /// let client = DiscoveryClient::builder(MemoryRegistry::new())
    ///     .tls(identity)
    ///     .expect_identity("payments".parse()?, "spiffe://shop/payment-service".parse()?)
    ///     .build::<http_body_util::Empty<bytes::Bytes>>();
    /// # drop(client);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, identity: WorkloadIdentity) -> Self {
        self.tls.identity = Some(identity);
        self
    }

    /// The server identity every instance of `service` must present over
    /// mTLS (feature `tls`). It wins over instance metadata, even with
    /// [`trust_registry_identities`](Self::trust_registry_identities) on.
    pub fn expect_identity(mut self, service: ServiceName, expected: ExpectedIdentity) -> Self {
        self.tls.expected.insert(service, expected);
        self
    }

    /// Whether an instance's [`SPIFFE_ID_METADATA`] decides which server
    /// identity it must prove, for services without a configured identity
    /// (feature `tls`; off by default).
    ///
    /// **On, whoever can write the registry chooses whom this client
    /// sends its requests to**: any workload of the trust domain, by
    /// registering an instance of `payment-service` whose metadata names
    /// itself. Turn it on only when registry writes are as trusted as the
    /// CA. Even then the metadata must name a workload
    /// (`spiffe://shop/payment-service`); a bare trust domain, or a value
    /// that is no SPIFFE ID, fails the request
    /// ([`DiscoveryError::TlsConfig`](super::DiscoveryError::TlsConfig)).
    pub fn trust_registry_identities(mut self, trust: bool) -> Self {
        self.tls.trust_registry = trust;
        self
    }
}

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
    trust_registry: bool,
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
    /// The identity `ep` must present: configured for its service, else
    /// (only when trusted) the workload its metadata names, else
    /// `spiffe://{our trust domain}/{service}`.
    pub(crate) fn expected_for(&self, ep: &Endpoint) -> Result<ExpectedIdentity, String> {
        let instance = ep.instance();
        if let Some(expected) = self.configured.get(instance.service()) {
            return Ok(expected.clone());
        }
        if self.trust_registry
            && let Some(raw) = instance.metadata().get(SPIFFE_ID_METADATA)
        {
            let id = SpiffeId::new(raw)
                .map_err(|e| format!("instance metadata {SPIFFE_ID_METADATA}={raw:?}: {e}"))?;
            if id.path().is_empty() {
                return Err(format!(
                    "instance metadata {SPIFFE_ID_METADATA}={raw:?} names a trust domain, \
                     not a workload"
                ));
            }
            return Ok(ExpectedIdentity::Exact(id));
        }
        let own = self.identity.spiffe_id().trust_domain();
        SpiffeId::from_parts(&own, instance.service().as_str())
            .map(ExpectedIdentity::Exact)
            .map_err(|e| e.to_string())
    }

    /// The pooled client for connections to servers that are `expected`
    /// (an unpooled one once [`MAX_POOLED_IDENTITIES`] are pooled).
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
        let clients = self.clients.load_full();
        if let Some(c) = clients.get(&expected) {
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
        if clients.len() >= MAX_POOLED_IDENTITIES {
            tracing::warn!(
                max = MAX_POOLED_IDENTITIES,
                "too many distinct server identities to pool a client for each; \
                 this request gets a new connection"
            );
            return Ok(client);
        }
        let mut map = HashMap::clone(&clients);
        map.insert(expected, client.clone());
        self.clients.store(Arc::new(map));
        Ok(client)
    }
}
