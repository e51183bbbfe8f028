//! The gateway in front: `config/gateway.yaml` with the services' instances
//! filled in, and the [`KeyRing`] through which user-service adds the API
//! keys its users mint (logins themselves are JWTs the gateway checks
//! against user-service's JWKS).
//!
//! The gateway shares the services' discovery registry
//! ([`Gateway::with_registry`] over the system's
//! [`MemoryRegistry`](msp_discovery::MemoryRegistry)): an instance that
//! registers is routed to, one that deregisters on shutdown leaves the
//! gateway's balancer before it drains.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! # let dir = tempfile::tempdir()?;
//! # let config = ecommerce::SystemConfig {
//! #     data_dir: dir.path().to_path_buf(),
//! #     gateway_listen: Some("127.0.0.1:0".parse()?),
//! #     ..Default::default()
//! # };
//! let system = ecommerce::System::start(config).await?;
//! let routes = system.gateway().config().routes().len();
//! assert_eq!(routes, 4); // the seed's three and /api/auth/*
//! let gw = ecommerce::demo::Http::new(system.gateway_url());
//! assert_eq!(gw.get("/api/orders", None).await?.0, 401);
//! assert_eq!(gw.get("/api/orders", Some("demo-key")).await?.0, 200);
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

use crate::platform::Running;
use crate::services::user::KeyIssuer;
use msp_core::BoxError;
use msp_gateway::Gateway;
use msp_gateway::config::{AuthProviderConfig, GatewayConfig};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// `config/gateway.yaml`, embedded so the binary runs from any directory.
pub const DEFAULT_YAML: &str = include_str!("../config/gateway.yaml");

/// The API-key provider user-service adds its users' minted keys to.
pub const KEY_PROVIDER: &str = "keys";

/// Loads `yaml`, overrides `listen` when given, and checks that every
/// service it names is one this system runs (the instances themselves come
/// from the services' registry: [`Gateway::with_registry`]).
pub fn config(
    yaml: &str,
    listen: Option<SocketAddr>,
    services: &[Running],
) -> Result<GatewayConfig, BoxError> {
    let loaded = GatewayConfig::from_yaml(yaml, "config/gateway.yaml")?;
    let mut builder = loaded.to_builder();
    if let Some(addr) = listen {
        builder = builder.listen(addr);
    }
    for name in loaded.services().keys() {
        if !services.iter().any(|s| s.name == name) {
            return Err(
                format!("gateway.yaml names {name:?}, which this system does not run").into(),
            );
        }
    }
    Ok(builder.build()?)
}

/// Adds API-key consumers to a running gateway, one reload at a time.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    gateway: Arc<OnceLock<Gateway>>,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl KeyRing {
    /// Gives the ring its gateway (once; later calls are ignored).
    pub fn attach(&self, gateway: Gateway) {
        let _already_attached = self.gateway.set(gateway);
    }

    /// Adds consumer `name` with the key whose SHA-256 is `key_sha256` to
    /// the [`KEY_PROVIDER`] provider and reloads the gateway.
    pub async fn add(&self, name: &str, key_sha256: &str) -> Result<u64, BoxError> {
        let gateway = self.gateway.get().ok_or("the gateway is not started yet")?;
        let _serialised = self.one_at_a_time.lock().await;
        let current = gateway.config();
        let provider = match current.auth().providers.get(KEY_PROVIDER) {
            Some(AuthProviderConfig::ApiKey(keys)) => keys.clone().consumer(name, key_sha256),
            _ => {
                return Err(
                    format!("gateway.yaml has no api_key provider named {KEY_PROVIDER:?}").into(),
                );
            }
        };
        let next = current
            .to_builder()
            .auth_provider(KEY_PROVIDER, AuthProviderConfig::ApiKey(provider))
            .build()?;
        Ok(gateway.reload(next).await?)
    }

    /// The ring as user-service's [`KeyIssuer`].
    pub fn issuer(&self) -> KeyIssuer {
        let ring = self.clone();
        Arc::new(move |name, digest| {
            let ring = ring.clone();
            Box::pin(async move { ring.add(&name, &digest).await.map(drop) })
        })
    }
}
