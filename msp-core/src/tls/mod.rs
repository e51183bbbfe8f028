//! Mutual TLS between services with SPIFFE workload identities (feature
//! `tls`): the service-mesh data plane's mTLS, in-process.
//!
//! - **Identity**: a [`WorkloadIdentity`] holds the workload's X509-SVID
//!   (certificate whose only URI SAN is its SPIFFE ID), private key and
//!   trust bundle, loaded from [`IdentityFiles`] and rotated when they
//!   change ([`WorkloadIdentity::watch`], [`WorkloadIdentity::reload_now`]):
//!   new handshakes use the new certificate, open connections go on. An
//!   expiry gauge ([`CERT_EXPIRY_GAUGE`]) per certificate and a warning
//!   when less than a third of its lifetime is left.
//! - **Verification**: the X509-SVID rules ([`svid_of`]: exactly one URI
//!   SAN, a SPIFFE ID with a path, not a CA, key usage), then rustls's
//!   WebPKI chain verification against the CAs of the trust domain the ID
//!   names (one bundle per trust domain: a domain's CA cannot vouch for
//!   another's workloads), then the accepted trust domains (server side) or
//!   the [`ExpectedIdentity`] (client side; server names are SPIFFE IDs,
//!   not DNS names). Failures are typed ([`SvidError`] inside a
//!   [`TlsError`]).
//! - **Server**: [`MtlsListener`], an axum `Listener` (and a plain
//!   [`accept`](MtlsListener::accept) for hyper) in [`Mode::Strict`] or
//!   [`Mode::Permissive`] (plaintext and mTLS on one port); ALPN `h2` and
//!   `http/1.1`; concurrent handshakes with a timeout, a failed one never
//!   stops the accepting. [`with_peer_identity`] puts the verified
//!   [`PeerIdentity`](crate::identity::PeerIdentity) into every request's
//!   extensions.
//! - **Client**: [`MtlsConnector`], a hyper-util connector presenting the
//!   workload certificate and accepting only the expected server identity.
//! - **Development CA**: [`dev`], also as the `dev_ca` example binary.
//!
//! Session resumption is off on both sides, so every connection is
//! verified against the current trust bundle and sees the current
//! certificates.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `msp_tls_certificate_expiry_seconds` | gauge | `spiffe_id` |
//! | `msp_tls_server_handshake_failures_total` | counter | `reason` (`svid`, `tls`, `timeout`) |
//! | `msp_tls_server_connections_total` | counter | `protocol` (`mtls`, `plaintext`) |
//!
//! # Example
//!
//! An mTLS server and a client, with certificates from the development CA:
//!
//! ```
//! use axum::{Extension, Router, routing::get};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use msp_core::identity::PeerIdentity;
//! use msp_core::tls::dev::DevCa;
//! use msp_core::tls::{MtlsConnector, MtlsListener, WorkloadIdentity, with_peer_identity};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = DevCa::new("shop".parse()?)?;
//! let identity = |service: &str| -> Result<WorkloadIdentity, Box<dyn std::error::Error>> {
//!     let cert = ca.issue(service)?;
//!     Ok(WorkloadIdentity::from_pem(
//!         cert.cert_pem().as_bytes(),
//!         cert.key_pem().as_bytes(),
//!         ca.cert_pem().as_bytes(),
//!     )?)
//! };
//!
//! // payment-service answers with the caller's verified identity.
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = tcp.local_addr()?;
//! let listener = MtlsListener::new(tcp, &identity("payment-service")?)?;
//! let app = Router::new().route(
//!     "/whoami",
//!     get(|Extension(peer): Extension<PeerIdentity>| async move { peer.to_string() }),
//! );
//! tokio::spawn(async move { axum::serve(listener, with_peer_identity(app)).await });
//!
//! // order-service calls it, expecting exactly spiffe://shop/payment-service.
//! let connector = MtlsConnector::new(
//!     &identity("order-service")?,
//!     "spiffe://shop/payment-service".parse()?,
//! )?;
//! let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
//! let res = client.get(format!("http://{addr}/whoami").parse()?).await?;
//! let server = res.extensions().get::<PeerIdentity>().cloned();
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "spiffe://shop/order-service");
//! assert_eq!(server.map(|p| p.to_string()).as_deref(), Some("spiffe://shop/payment-service"));
//! # Ok(())
//! # }
//! ```

mod connector;
mod credentials;
pub mod dev;
mod error;
mod listener;
mod service;
mod svid;
mod verify;

pub use self::connector::{MtlsClientStream, MtlsConnector, MtlsConnectorBuilder};
pub use self::credentials::{
    CERT_EXPIRY_GAUGE, IdentityFiles, IdentityWatcher, MIN_WATCH_INTERVAL, Reload, WorkloadIdentity,
};
pub use self::error::{SvidError, TlsError};
pub use self::listener::{
    CONNECTIONS, HANDSHAKE_FAILURES, Mode, MtlsListener, MtlsListenerBuilder, MtlsStream,
    TlsConnectInfo,
};
pub use self::service::{MakePeerIdentity, PeerIdentityService, with_peer_identity};
pub use self::svid::{ExpectedIdentity, SvidInfo, svid_of};
