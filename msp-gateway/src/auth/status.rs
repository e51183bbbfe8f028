//! [`ProviderStatus`]: an auth provider as the admin listener shows it.
//!
//! # Example
//!
//! ```
//! use msp_gateway::Gateway;
//! use msp_gateway::auth::hash_api_key;
//! use msp_gateway::config::GatewayConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! let config = GatewayConfig::from_yaml(&format!(r#"
//! routes:
//!   - {{ path: "/api/*", service: api, auth_required: true }}
//! services:
//!   api: {{ instances: ["127.0.0.1:9"] }}
//! auth:
//!   providers:
//!     keys: {{ api_key: {{ consumers: [{{ name: web, key_sha256: "{}" }}] }} }}
//! "#, hash_api_key("k")), "inline")?;
//! let gateway = Gateway::from_config(config).await?;
//! let providers = gateway.auth_providers();
//! assert_eq!((providers[0].name.as_str(), providers[0].kind), ("keys", "api_key"));
//! # Ok(())
//! # }
//! ```

use super::JwtStatus;
use serde::Serialize;

/// One auth provider in the admin listener's `GET /auth`: never a key,
/// digest or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProviderStatus {
    /// The provider's name.
    pub name: String,
    /// `api_key` or `jwt`.
    pub kind: &'static str,
    /// A JWT provider's issuer, algorithms, key ids and last fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtStatus>,
}
