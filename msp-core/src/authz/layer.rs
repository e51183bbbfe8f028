//! [`AuthorizationLayer`].

use super::{Authorization, PolicyHandle};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use tower_layer::Layer;

/// Reads the peer's IP address from a request's extensions.
pub(super) type PeerIp = fn(&http::Extensions) -> Option<IpAddr>;

/// The default [`PeerIp`]: a `SocketAddr` extension (the convention of
/// msp's own servers: msp-gateway, msp-resilience's `PeerAddr`), else
/// axum's `ConnectInfo<SocketAddr>` (inserted by
/// `msp_core::tls::with_peer_identity` (feature `tls`) and by
/// axum's `into_make_service_with_connect_info::<SocketAddr>()`).
pub(super) fn connection_peer(ext: &http::Extensions) -> Option<IpAddr> {
    if let Some(addr) = ext.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Wraps services in [`Authorization`]; every service it makes (and every
/// clone of those) reads the same [`PolicyHandle`].
///
/// The peer's address (for `ip_blocks`) is read by default from a
/// `SocketAddr` request extension (msp's servers insert one) or axum's
/// `ConnectInfo<SocketAddr>` (msp's mTLS listener through
/// `msp_core::tls::with_peer_identity` (feature `tls`), and
/// `axum::serve` with `into_make_service_with_connect_info::<SocketAddr>()`).
/// Any other connection type is read with
/// [`peer_ip`](AuthorizationLayer::peer_ip):
///
/// ```
/// use msp_core::authz::{AuthorizationLayer, PolicyHandle};
/// use std::net::SocketAddr;
///
/// #[derive(Clone)]
/// struct MyConnInfo { remote: SocketAddr }
///
/// let layer = AuthorizationLayer::new(PolicyHandle::default())
///     .peer_ip(|ext| ext.get::<MyConnInfo>().map(|c| c.remote.ip()));
/// # drop(layer);
/// ```
#[derive(Clone)]
#[must_use]
pub struct AuthorizationLayer {
    policies: PolicyHandle,
    peer_ip: PeerIp,
}

impl fmt::Debug for AuthorizationLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationLayer")
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl AuthorizationLayer {
    /// Authorizes requests against `policies` (a [`PolicyHandle`], or an
    /// [`AuthorizationPolicies`](super::AuthorizationPolicies) set that
    /// will never change).
    pub fn new(policies: impl Into<PolicyHandle>) -> Self {
        AuthorizationLayer {
            policies: policies.into(),
            peer_ip: connection_peer,
        }
    }

    /// Reads the peer's IP address with `read` instead of from a
    /// `SocketAddr` or `ConnectInfo<SocketAddr>` extension.
    pub fn peer_ip(mut self, read: fn(&http::Extensions) -> Option<IpAddr>) -> Self {
        self.peer_ip = read;
        self
    }

    /// The shared policy handle.
    pub fn policies(&self) -> &PolicyHandle {
        &self.policies
    }
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = Authorization<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorization::with_peer_ip(inner, self.policies.clone(), self.peer_ip)
    }
}
