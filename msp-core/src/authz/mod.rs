//! Authorization policies over peer identities, addresses and requests
//! (feature `tls`): who may call what, as a tower layer.
//!
//! Policies follow Istio's `AuthorizationPolicy` (and linkerd's
//! authorizations): each [`Policy`] has an [`Action`] — `ALLOW`, `DENY` or
//! `AUDIT` — and [`Rule`]s. A rule matches a request coming `from` a
//! [`Source`] (the peer's SPIFFE ID — exact, prefix such as
//! `spiffe://shop/ns/*`, or trust domain —, whether it is authenticated,
//! its IP block), going `to` an [`Operation`] (methods, paths with
//! wildcards, hosts, ports) and meeting `when` [`Condition`]s on request
//! headers (at the gateway, the identity headers its JWT layer sets from
//! verified claims). Evaluation, as in Istio:
//!
//! 1. AUDIT policies never change the decision; each match is logged and
//!    counted (a dry run of a policy before enforcing it).
//! 2. DENY is evaluated before ALLOW: a request matching a DENY rule is
//!    denied.
//! 3. A request matching an ALLOW rule is allowed.
//! 4. When any ALLOW policy exists, a request matching none is denied;
//!    with no ALLOW policy, it is allowed.
//!
//! The peer's identity is the [`PeerIdentity`](crate::identity::PeerIdentity)
//! msp's mTLS listener puts in the request extensions (none: an
//! unauthenticated peer); its address is a `SocketAddr` extension or axum's
//! `ConnectInfo<SocketAddr>` (both of which that listener's
//! `msp_core::tls::with_peer_identity` (feature `tls`) provides), or
//! what [`AuthorizationLayer::peer_ip`] reads.
//!
//! Before any policy is evaluated, a request whose path normalisation
//! would change segment by segment (`/admin/..`, `/admin/%2e%2e`, `//x`, an
//! encoded `/`) or whose URI authority and `Host` header disagree is
//! refused with `400` problem+json ([`MalformedRequest`], codes `bad_path`,
//! `bad_host`): what is authorised is exactly what the router routes.
//!
//! A denied request never reaches the inner service. It is answered `403
//! Forbidden` with an RFC 9457 problem+json body (code
//! `permission_denied`), or, when its `content-type` is
//! `application/grpc*`, `200 OK` with `grpc-status: 7`
//! (PERMISSION_DENIED): see [`PermissionDenied`].
//!
//! Policies are serde config ([`AuthorizationPolicies`], validated on
//! deserialization: an invalid set is a [`PolicyError`] naming the policy
//! and rule) and hot-reloadable: the layer reads them from a
//! [`PolicyHandle`] shared by all its clones, which a user feeds from
//! msp-config's `Watched` (see [`PolicyHandle`] for the bridge).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `msp_authz_decisions_total` | counter | `policy`, `rule` (the rule's name, else its position from 0), `decision` (`allow`, `deny`, `audit`) |
//!
//! A request is counted once for its decision — under the deciding rule,
//! or under `policy=""`, `rule=""` for a default decision or a refused
//! ambiguous request (`decision="deny"`) — and once more
//! per AUDIT policy it matches. Counters are registered when a policy set
//! is compiled: install the metrics recorder first.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use msp_core::authz::{AuthorizationLayer, AuthorizationPolicies, PolicyHandle};
//! use msp_core::identity::PeerIdentity;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // The same shape as a YAML file (JSON here).
//! let policies: AuthorizationPolicies = serde_json::from_str(r#"{
//!   "policies": [{
//!     "name": "payments", "action": "ALLOW",
//!     "rules": [{
//!       "from": [{"principals": ["spiffe://shop/order-service"]}],
//!       "to": [{"methods": ["POST"], "paths": ["/payments", "/payments/*"]}]
//!     }]
//!   }]
//! }"#)?;
//! let handle = PolicyHandle::new(policies);
//!
//! let app = Router::new()
//!     .route("/payments", post(|| async { "paid" }))
//!     .layer(ServiceBuilder::new().layer(AuthorizationLayer::new(handle.clone())));
//!
//! let from = |id: &str| -> Result<Request<Body>, Box<dyn std::error::Error + Send + Sync>> {
//!     let mut req = Request::post("/payments").body(Body::empty())?;
//!     req.extensions_mut().insert(PeerIdentity::new(id.parse()?));
//!     Ok(req)
//! };
//! let res = app.clone().oneshot(from("spiffe://shop/order-service")?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let res = app.clone().oneshot(from("spiffe://shop/user-service")?).await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//!
//! // Hot reload: the next request sees the new set, no rebuild.
//! handle.store(AuthorizationPolicies::default());
//! let res = app.oneshot(from("spiffe://shop/user-service")?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
pub mod future;
mod handle;
mod layer;
mod pattern;
mod policies;
mod service;
mod target;

pub use self::config::{
    Action, AuthorizationPoliciesBuilder, Condition, Operation, Policy, Rule, Source,
};
pub use self::error::{MalformedRequest, PermissionDenied, PolicyError};
pub use self::handle::PolicyHandle;
pub use self::layer::AuthorizationLayer;
pub use self::policies::{AuthorizationPolicies, Decision};
pub use self::service::Authorization;
