//! Workload identities: SPIFFE IDs, trust domains and the verified identity
//! of a request's peer.
//!
//! A workload (a service instance) is named by a [SPIFFE ID] such as
//! `spiffe://shop/order-service`: a **trust domain** (`shop`, the set of
//! workloads one CA vouches for) and a **path** naming the workload in it.
//! msp's mTLS (feature `tls`) reads the ID from a certificate's URI SAN and,
//! once the handshake verified it, puts a [`PeerIdentity`] into the request's
//! extensions; authorization policies match on it. A request without a
//! `PeerIdentity` came from an unauthenticated peer.
//!
//! Parsing follows the SPIFFE ID specification: scheme `spiffe`, a
//! lower-case trust domain of `[a-z0-9.-_]`, no port, user info, query or
//! fragment, path segments of `[A-Za-z0-9.-_]` that are neither empty nor
//! `.` / `..`, and at most 2048 bytes in all. Bad input is a typed
//! [`InvalidSpiffeId`], never a panic.
//!
//! [SPIFFE ID]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md
//!
//! # Example
//!
//! ```
//! use msp_core::identity::{InvalidSpiffeId, SpiffeId, TrustDomain};
//!
//! let id: SpiffeId = "spiffe://shop/order-service".parse()?;
//! assert_eq!(id.trust_domain().as_str(), "shop");
//! assert_eq!(id.path(), "/order-service");
//! assert!(id.is_member_of(&TrustDomain::new("shop")?));
//!
//! // Bad input is a typed error.
//! assert!(matches!(
//!     "spiffe://Shop/x".parse::<SpiffeId>(),
//!     Err(InvalidSpiffeId::BadTrustDomainChar { .. })
//! ));
//! assert!("spiffe://shop/a/../b".parse::<SpiffeId>().is_err());
//!
//! // IDs travel through config as strings.
//! let back: SpiffeId = serde_json::from_str("\"spiffe://shop/payment-service\"")?;
//! assert_eq!(back.path(), "/payment-service");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Why a SPIFFE ID or trust domain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSpiffeId {
    /// The ID was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The ID was longer than [`SpiffeId::MAX_LEN`] bytes.
    #[error("SPIFFE ID is {len} bytes long, the limit is {max}")]
    TooLong {
        /// The length of the rejected ID.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The ID did not start with `spiffe://` (the scheme is lower case).
    #[error("SPIFFE ID {0:?} does not start with \"spiffe://\"")]
    WrongScheme(String),
    /// The trust domain was empty.
    #[error("SPIFFE ID {0:?} has an empty trust domain")]
    EmptyTrustDomain(String),
    /// The trust domain held a character outside `[a-z0-9.-_]` (this covers
    /// upper case, a port, user info, a query and a fragment).
    #[error("trust domain of {id:?} contains {ch:?}; allowed are a-z, 0-9, '.', '-' and '_'")]
    BadTrustDomainChar {
        /// The rejected ID or trust domain.
        id: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// A path segment was empty (`//` or a trailing `/`), `.` or `..`.
    #[error("SPIFFE ID {0:?} has an empty, '.' or '..' path segment")]
    BadSegment(String),
    /// The path held a character outside `[A-Za-z0-9.-_]` (this covers
    /// percent-encoding, a query and a fragment).
    #[error("path of {id:?} contains {ch:?}; allowed are letters, digits, '.', '-' and '_'")]
    BadPathChar {
        /// The rejected ID.
        id: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

fn trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// A SPIFFE trust domain, such as `shop` or `prod.example.com`.
///
/// Cloning is cheap (a reference count).
///
/// ```
/// use msp_core::identity::TrustDomain;
/// let td = TrustDomain::new("shop")?;
/// assert_eq!(td.to_string(), "shop");
/// assert_eq!(td.id_string(), "spiffe://shop");
/// assert!(TrustDomain::new("shop:8443").is_err());
/// # Ok::<(), msp_core::identity::InvalidSpiffeId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    /// Validates a trust domain name (without the `spiffe://` scheme; a
    /// leading `spiffe://` with nothing after the name is accepted too).
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidSpiffeId> {
        let raw = name.as_ref();
        let name = raw.strip_prefix("spiffe://").unwrap_or(raw);
        if name.is_empty() {
            return Err(InvalidSpiffeId::EmptyTrustDomain(raw.to_owned()));
        }
        if raw.len() > SpiffeId::MAX_LEN {
            return Err(InvalidSpiffeId::TooLong {
                len: raw.len(),
                max: SpiffeId::MAX_LEN,
            });
        }
        if let Some(ch) = name.chars().find(|&c| !trust_domain_char(c)) {
            return Err(InvalidSpiffeId::BadTrustDomainChar {
                id: raw.to_owned(),
                ch,
            });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The trust domain's name, such as `shop`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain as a SPIFFE ID string, `spiffe://{name}`.
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = InvalidSpiffeId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = InvalidSpiffeId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<TrustDomain> for String {
    fn from(td: TrustDomain) -> Self {
        td.0.to_string()
    }
}

/// A SPIFFE ID, `spiffe://{trust domain}{path}`, such as
/// `spiffe://shop/order-service`.
///
/// The path may be empty (the ID of the trust domain itself); an X509-SVID
/// for a workload needs a non-empty one ([`SpiffeId::is_workload`]).
/// Cloning is cheap (a reference count).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    /// The whole ID, `spiffe://td/path`.
    id: Arc<str>,
    /// Where the path starts in `id` (== id.len() when there is no path).
    path_at: usize,
}

impl SpiffeId {
    /// The longest accepted ID, in bytes (the SPIFFE ID specification's
    /// limit for URI SANs).
    pub const MAX_LEN: usize = 2048;

    /// Parses and validates a SPIFFE ID.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidSpiffeId> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(InvalidSpiffeId::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return Err(InvalidSpiffeId::TooLong {
                len: id.len(),
                max: Self::MAX_LEN,
            });
        }
        let Some(rest) = id.strip_prefix("spiffe://") else {
            return Err(InvalidSpiffeId::WrongScheme(id.to_owned()));
        };
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if td.is_empty() {
            return Err(InvalidSpiffeId::EmptyTrustDomain(id.to_owned()));
        }
        if let Some(ch) = td.chars().find(|&c| !trust_domain_char(c)) {
            return Err(InvalidSpiffeId::BadTrustDomainChar {
                id: id.to_owned(),
                ch,
            });
        }
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                if segment.is_empty() || segment == "." || segment == ".." {
                    return Err(InvalidSpiffeId::BadSegment(id.to_owned()));
                }
                if let Some(ch) = segment.chars().find(|&c| !path_char(c)) {
                    return Err(InvalidSpiffeId::BadPathChar {
                        id: id.to_owned(),
                        ch,
                    });
                }
            }
        }
        Ok(Self {
            id: Arc::from(id),
            path_at: "spiffe://".len() + td.len(),
        })
    }

    /// The ID of workload `path` (such as `/order-service`; a missing
    /// leading `/` is added) in `trust_domain`.
    pub fn from_parts(trust_domain: &TrustDomain, path: &str) -> Result<Self, InvalidSpiffeId> {
        if path.is_empty() || path.starts_with('/') {
            Self::new(format!("spiffe://{trust_domain}{path}"))
        } else {
            Self::new(format!("spiffe://{trust_domain}/{path}"))
        }
    }

    /// The trust domain's name, such as `shop`.
    pub fn trust_domain_str(&self) -> &str {
        &self.id["spiffe://".len()..self.path_at]
    }

    /// The trust domain (allocates a small `Arc`; compare with
    /// [`SpiffeId::is_member_of`] on hot paths).
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(Arc::from(self.trust_domain_str()))
    }

    /// Whether this ID belongs to `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain_str() == trust_domain.as_str()
    }

    /// The path, such as `/order-service`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_at..]
    }

    /// Whether the ID names a workload (its path is not empty), as an
    /// X509-SVID leaf certificate's ID must.
    pub fn is_workload(&self) -> bool {
        self.path_at < self.id.len()
    }

    /// The whole ID, `spiffe://td/path`.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.id, f)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = InvalidSpiffeId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = InvalidSpiffeId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> Self {
        id.id.to_string()
    }
}

/// The verified identity of the peer a request came from.
///
/// msp's mTLS listener (feature `tls`) inserts it into every request's
/// extensions once the peer's certificate chain and SPIFFE ID were verified;
/// authorization policies read it. A request without one came from a peer
/// that presented no verified identity (plaintext, or TLS without a client
/// certificate).
///
/// ```
/// use msp_core::identity::{PeerIdentity, SpiffeId};
///
/// let mut req = http::Request::new(());
/// let id: SpiffeId = "spiffe://shop/order-service".parse()?;
/// req.extensions_mut().insert(PeerIdentity::new(id.clone()));
///
/// let peer = req.extensions().get::<PeerIdentity>().expect("set above");
/// assert_eq!(peer.spiffe_id(), &id);
/// # Ok::<(), msp_core::identity::InvalidSpiffeId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    id: SpiffeId,
}

impl PeerIdentity {
    /// A peer verified as `id`.
    pub fn new(id: SpiffeId) -> Self {
        Self { id }
    }

    /// The peer's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PeerIdentity").field(&self.id).finish()
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_the_specification_allows() {
        for ok in [
            "spiffe://shop",
            "spiffe://shop/order-service",
            "spiffe://prod.example.com/ns/default/sa/order_service",
            "spiffe://a-b_c.9/A.b-C_9",
        ] {
            assert!(SpiffeId::new(ok).is_ok(), "{ok}");
        }
        let id = SpiffeId::new("spiffe://shop").expect("valid");
        assert!(!id.is_workload());
        assert_eq!(id.path(), "");
    }

    #[test]
    fn rejects_ids_the_specification_forbids() {
        for bad in [
            "",
            "http://shop/x",
            "SPIFFE://shop/x",
            "spiffe://",
            "spiffe:///x",
            "spiffe://Shop/x",
            "spiffe://shop:8443/x",
            "spiffe://user@shop/x",
            "spiffe://shop/",
            "spiffe://shop//x",
            "spiffe://shop/./x",
            "spiffe://shop/x/..",
            "spiffe://shop/x%20y",
            "spiffe://shop/x?y",
            "spiffe://shop/x#y",
            "spiffe://shop?x",
        ] {
            assert!(SpiffeId::new(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("spiffe://shop/{}", "a".repeat(SpiffeId::MAX_LEN));
        assert!(matches!(
            SpiffeId::new(long),
            Err(InvalidSpiffeId::TooLong { .. })
        ));
    }

    #[test]
    fn from_parts_adds_the_leading_slash() {
        let td = TrustDomain::new("shop").expect("valid");
        let a = SpiffeId::from_parts(&td, "order-service").expect("valid");
        let b = SpiffeId::from_parts(&td, "/order-service").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "spiffe://shop/order-service");
        assert!(a.is_member_of(&td));
        assert!(!a.is_member_of(&TrustDomain::new("other").expect("valid")));
    }
}
