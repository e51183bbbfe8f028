//! Authentication at the edge: API keys and JWT bearer tokens, and the
//! identity headers upstreams receive.
//!
//! | provider | what it checks |
//! |---|---|
//! | [`ApiKeyAuth`] (`api_key:`) | a key from a header (`x-api-key`) or a query parameter, compared as a SHA-256 digest with every consumer's in constant time (`subtle`); keys are never in the config, errors or `Debug` — only digests ([`hash_api_key`], or `cargo run -p msp-gateway --example hash_api_key -- KEY`) |
//! | [`JwtAuth`] (`jwt:`) | a `Bearer` token: algorithm pinned per provider, signature with a key from a JWKS (URL or file) or an HMAC secret, `exp`/`nbf` with leeway, `iss`, `aud`, required claims and scopes |
//!
//! A route with `auth_required: true` uses the default provider, or tries
//! the providers it names in `auth:` in order; the first that accepts the
//! request wins, else the most specific refusal is answered
//! ([`AuthError`]): `401` with `WWW-Authenticate` (`Bearer realm=…,
//! error="invalid_token", error_description=…` per RFC 6750 for tokens),
//! `403 insufficient_scope` for a token without a required scope, `503`
//! when a JWT provider never got its key set (the token may be fine) —
//! all problem+json. The verified [`Identity`] goes upstream in
//! [`IdentityHeaders`] (`x-consumer`, `x-jwt-sub`, `x-auth-provider`,
//! `x-jwt-claim-<name>`), which the gateway first strips from **every**
//! incoming request, on routes with and without auth.
//!
//! # JWT keys
//!
//! A JWKS URL is fetched through the gateway's own pooled
//! [`ProxyClient`](crate::proxy::ProxyClient) (plain `http://`; serve an
//! `https` IdP's set through a local sidecar or a file), in the background
//! on `Cache-Control: max-age` bounded by `min_refresh`/`max_refresh`. A
//! token with an unknown `kid` re-fetches the set at most once per
//! `min_refetch_interval`, and concurrent requests share that one fetch.
//! A failed fetch keeps the last good set; only a provider that never had
//! one answers `503` (with `Retry-After`). Every fetch counts in
//! `msp_gateway_jwks_fetches_total{provider, result="ok"|"error"}`; the
//! admin listener's `GET /auth` shows the key ids, the last fetch and its
//! error.
//!
//! # Crypto backend
//!
//! Signatures are verified by `jsonwebtoken` with **exactly one** crypto
//! backend enabled: `rust_crypto` (RustCrypto's `rsa`, `p256`, `p384`,
//! `ed25519-dalek`, `hmac`), pure Rust — no C toolchain, no second native
//! crypto stack next to rustls' ring. (`jsonwebtoken` refuses to pick a
//! provider when both its backends are on.) RUSTSEC-2023-0071 (the
//! Marvin timing attack on the `rsa` crate) concerns private-key
//! operations — decryption and signing; the gateway only verifies
//! signatures with public keys, which the advisory does not affect.
//!
//! # Example
//!
//! An HS256 token (an IdP would use RS256 with `jwks`; see the README and
//! `tests/jwt.rs`):
//!
//! ```
//! use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
//! use msp_gateway::auth::{AuthErrorKind, JwtAuth};
//! use msp_gateway::config::JwtConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="; // 32 bytes, base64
//! let auth = JwtAuth::new(
//!     "idp",
//!     &JwtConfig::new(["HS256"])
//!         .secret_base64(secret)
//!         .issuer("https://idp.example.com")
//!         .required_scopes(["orders:read"]),
//! )?;
//!
//! let token = |scope: &str| {
//!     let claims = serde_json::json!({
//!         "sub": "alice", "iss": "https://idp.example.com", "scope": scope,
//!         "exp": jsonwebtoken::get_current_timestamp() + 60,
//!     });
//!     encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_base64_secret(secret)?)
//! };
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {}", token("orders:read")?).parse()?);
//! assert_eq!(auth.authenticate(&headers).await?.subject(), Some("alice"));
//!
//! headers.insert("authorization", format!("Bearer {}", token("profile")?).parse()?);
//! let err = auth.authenticate(&headers).await.unwrap_err();
//! assert_eq!(err.kind(), AuthErrorKind::InsufficientScope);
//! assert_eq!(err.into_response::<()>().status(), 403);
//! # Ok(())
//! # }
//! ```

mod api_key;
mod error;
mod identity;
mod jwt;
mod status;

pub(crate) use self::api_key::parse_digest;
pub use self::api_key::{ApiKeyAuth, Consumer, InvalidApiKeyConfig, hash_api_key};
pub use self::error::{AuthError, AuthErrorKind};
pub use self::identity::{Identity, IdentityHeaders, InvalidIdentityHeader};
pub(crate) use self::jwt::jwks_uri;
pub use self::jwt::{InvalidJwtConfig, JwtAuth, JwtStatus};
pub use self::status::ProviderStatus;
