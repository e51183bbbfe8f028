//! Who is on the other end of a proxied exchange: [`ForwardContext`],
//! [`TrustedProxies`] and the [`HostPolicy`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use http::header::HeaderValue;
use http::uri::Scheme;
use ipnet::IpNet;

use super::headers::X_FORWARDED_FOR;

/// The proxies whose forwarding headers (`X-Forwarded-*`, `Forwarded`) the
/// gateway believes, as CIDR blocks. Cheap to clone (shared).
///
/// A request from a peer outside the list has its incoming forwarding
/// headers replaced, so a client can never claim another address; a request
/// from a trusted peer keeps them and the gateway appends its own hop.
///
/// # Example
///
/// ```
/// use msp_gateway::proxy::TrustedProxies;
///
/// let trusted = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "203.0.113.7, 10.1.2.3".parse().unwrap());
///
/// // From a trusted load balancer: the rightmost untrusted hop is the client.
/// let ip = trusted.client_ip("10.9.9.9:4000".parse().unwrap(), &headers);
/// assert_eq!(ip, "203.0.113.7".parse::<std::net::IpAddr>().unwrap());
///
/// // From anyone else: the peer itself, whatever the header says.
/// let ip = trusted.client_ip("198.51.100.1:4000".parse().unwrap(), &headers);
/// assert_eq!(ip, "198.51.100.1".parse::<std::net::IpAddr>().unwrap());
/// ```
#[derive(Clone, Default)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

impl TrustedProxies {
    /// Trusts the given CIDR blocks (`10.0.0.0/8`, `::1/128`).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        TrustedProxies {
            nets: nets.into_iter().collect(),
        }
    }

    /// Trusts nobody: every request's forwarding headers are replaced.
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// `true` when `ip` is inside one of the trusted blocks. An
    /// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is checked as IPv4.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The trusted blocks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// The client's address: the peer when it is not trusted; otherwise the
    /// `X-Forwarded-For` chain walked right to left, skipping trusted hops,
    /// and the first untrusted one is the client (the leftmost entry when
    /// every hop is trusted). An entry that is not an IP address ends the
    /// walk at the last good hop, so garbage never becomes a key.
    ///
    /// This is the address per-IP rate limits key on.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer.ip());
        if !self.is_trusted(client) {
            return client;
        }
        let values: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(ip) = parse_forwarded_ip(entry.trim()) else {
                return client;
            };
            client = ip;
            if !self.is_trusted(ip) {
                return ip;
            }
        }
        client
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.nets.iter()).finish()
    }
}

/// An `X-Forwarded-For` entry: a bare IP, optionally with a port
/// (`1.2.3.4:80`, `[::1]:80`) as some proxies write it.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one key.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The values for `msp-gateway`, built once: a context is made per request.
fn default_via() -> Arc<ViaValues> {
    static VIA: OnceLock<Arc<ViaValues>> = OnceLock::new();
    VIA.get_or_init(|| {
        Arc::new(ViaValues::new("msp-gateway").expect("a token is a valid header value"))
    })
    .clone()
}

/// What the `Host` of the upstream request is.
///
/// # Example
///
/// ```
/// use msp_gateway::proxy::HostPolicy;
///
/// // A route with `preserve_host: true`.
/// let policy = HostPolicy::Preserve;
/// assert_ne!(policy, HostPolicy::default());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostPolicy {
    /// The upstream's own authority (`10.0.0.1:8080`), the default: what
    /// the instance would see if called directly.
    #[default]
    Upstream,
    /// The client's `Host` (after absolute-form normalisation), for
    /// upstreams that route or build links by host (`preserve_host: true`).
    Preserve,
    /// A fixed value.
    Rewrite(HeaderValue),
}

/// One proxied exchange's view of the client connection: the peer address,
/// the scheme the client used, whom to trust, and the name the gateway puts
/// in `Via`. Cheap to clone.
///
/// # Example
///
/// ```
/// use msp_gateway::proxy::{ForwardContext, HostPolicy, TrustedProxies};
///
/// let ctx = ForwardContext::new("127.0.0.1:50000".parse().unwrap())
///     .with_trusted(TrustedProxies::none())
///     .with_gateway_name("msp-gateway")
///     .with_host_policy(HostPolicy::Preserve);
/// assert_eq!(ctx.scheme, http::uri::Scheme::HTTP);
/// ```
#[derive(Debug, Clone)]
pub struct ForwardContext {
    /// The address of the TCP peer (the client, or the proxy in front).
    pub peer: SocketAddr,
    /// The scheme the client spoke to the gateway (`http` unless TLS is
    /// terminated in front or by the server).
    pub scheme: Scheme,
    /// Whose forwarding headers to believe.
    pub trusted: TrustedProxies,
    /// What `Host` the upstream gets.
    pub host_policy: HostPolicy,
    /// The gateway's name and its `Via` values, built once per name.
    via: Arc<ViaValues>,
}

/// `Via` values for one gateway name, per protocol version.
#[derive(Debug)]
struct ViaValues {
    name: Arc<str>,
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

impl ViaValues {
    fn new(name: &str) -> Option<Self> {
        let value = |v: &str| {
            HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("{v} {name}"))).ok()
        };
        Some(ViaValues {
            name: Arc::from(name),
            http10: value("1.0")?,
            http11: value("1.1")?,
            http2: value("2")?,
        })
    }
}

impl ForwardContext {
    /// A context for a client at `peer`: scheme `http`, nobody trusted,
    /// `Via: 1.1 msp-gateway`, [`HostPolicy::Upstream`].
    pub fn new(peer: SocketAddr) -> Self {
        ForwardContext {
            peer,
            scheme: Scheme::HTTP,
            trusted: TrustedProxies::none(),
            host_policy: HostPolicy::Upstream,
            via: default_via(),
        }
    }

    /// Sets the scheme the client used.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Sets the trusted proxies.
    #[must_use]
    pub fn with_trusted(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }

    /// Sets the gateway's name in `Via`. Must be a `token` (letters, digits,
    /// `-`, `.`…); other characters are replaced by `-`, and an empty name
    /// leaves the default.
    #[must_use]
    pub fn with_gateway_name(mut self, name: &str) -> Self {
        if name.is_empty() {
            return self;
        }
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if let Some(via) = ViaValues::new(&clean) {
            self.via = Arc::new(via);
        }
        self
    }

    /// The gateway's name in `Via` (`msp-gateway` unless set).
    pub fn gateway_name(&self) -> &str {
        &self.via.name
    }

    /// The `Via` entry this gateway adds to a message of `version`.
    pub(crate) fn via(&self, version: http::Version) -> HeaderValue {
        match version {
            http::Version::HTTP_09 | http::Version::HTTP_10 => self.via.http10.clone(),
            http::Version::HTTP_2 | http::Version::HTTP_3 => self.via.http2.clone(),
            _ => self.via.http11.clone(),
        }
    }

    /// Sets the host policy (per route).
    #[must_use]
    pub fn with_host_policy(mut self, policy: HostPolicy) -> Self {
        self.host_policy = policy;
        self
    }

    /// The client's address as [`TrustedProxies::client_ip`] derives it.
    pub fn client_ip(&self, headers: &HeaderMap) -> IpAddr {
        self.trusted.client_ip(self.peer, headers)
    }
}
