//! X509-SVID rules: the SPIFFE ID of a certificate and the checks a leaf
//! must pass on top of chain verification.

use super::error::SvidError;
use crate::identity::{SpiffeId, TrustDomain};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// What an X509-SVID leaf certificate says about its holder, once it passed
/// the [SVID checks](svid_of).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SvidInfo {
    /// The workload's SPIFFE ID (the certificate's only URI SAN).
    pub spiffe_id: SpiffeId,
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period.
    pub not_after: SystemTime,
}

impl SvidInfo {
    /// Time left until `not_after` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// The whole validity period.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

fn system_time(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Checks the X509-SVID rules of a DER leaf certificate and returns its
/// SPIFFE ID and validity: exactly one URI SAN holding a SPIFFE ID with a
/// non-empty path, not a CA (basic constraints `CA=false` or absent), a key
/// usage extension with `digitalSignature` and without `keyCertSign` and
/// `cRLSign` (as go-spiffe checks).
///
/// It does not verify the chain, the signature or the validity period:
/// msp's verifiers run rustls's WebPKI verification first.
///
/// ```
/// use msp_core::tls::{dev::DevCa, svid_of, SvidError};
///
/// let ca = DevCa::new("shop".parse()?)?;
/// let cert = ca.issue("order-service")?;
/// let info = svid_of(cert.cert_der())?;
/// assert_eq!(info.spiffe_id.as_str(), "spiffe://shop/order-service");
///
/// // A CA certificate is no workload identity.
/// assert!(matches!(svid_of(ca.cert_der()), Err(SvidError::NotAWorkload(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn svid_of(der: &[u8]) -> Result<SvidInfo, SvidError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| SvidError::Malformed {
        reason: e.to_string(),
    })?;
    let malformed = |e: x509_parser::error::X509Error| SvidError::Malformed {
        reason: e.to_string(),
    };
    let mut uris = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(malformed)? {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push(*uri);
            }
        }
    }
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoSpiffeId),
        [one] => *one,
        more => return Err(SvidError::ManyUris { count: more.len() }),
    };
    let spiffe_id = SpiffeId::new(uri).map_err(|source| SvidError::BadSpiffeId {
        uri: uri.to_owned(),
        source,
    })?;
    if !spiffe_id.is_workload() {
        return Err(SvidError::NotAWorkload(spiffe_id));
    }
    if let Some(bc) = cert.basic_constraints().map_err(malformed)?
        && bc.value.ca
    {
        return Err(SvidError::IsCa);
    }
    match cert.key_usage().map_err(malformed)? {
        Some(ku) => {
            let ku = ku.value;
            if !ku.digital_signature() || ku.key_cert_sign() || ku.crl_sign() {
                return Err(SvidError::KeyUsage {
                    usage: ku.to_string(),
                });
            }
        }
        None => {
            return Err(SvidError::KeyUsage {
                usage: "absent".to_owned(),
            });
        }
    }
    let validity = cert.validity();
    Ok(SvidInfo {
        spiffe_id,
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
    })
}

/// The server identity a client expects for a target: one exact SPIFFE ID,
/// or any workload of a trust domain.
///
/// Parsed from a string (for instance metadata and config): a SPIFFE ID
/// with a path is [`Exact`](Self::Exact), one without
/// (`spiffe://shop`) is [`TrustDomain`](Self::TrustDomain).
///
/// ```
/// use msp_core::tls::ExpectedIdentity;
///
/// let exact: ExpectedIdentity = "spiffe://shop/payment-service".parse()?;
/// assert!(exact.matches(&"spiffe://shop/payment-service".parse()?));
/// assert!(!exact.matches(&"spiffe://shop/order-service".parse()?));
///
/// let domain: ExpectedIdentity = "spiffe://shop".parse()?;
/// assert!(domain.matches(&"spiffe://shop/order-service".parse()?));
/// assert!(!domain.matches(&"spiffe://other/order-service".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum ExpectedIdentity {
    /// Exactly this workload.
    Exact(SpiffeId),
    /// Any workload of this trust domain.
    TrustDomain(TrustDomain),
}

impl ExpectedIdentity {
    /// Whether a verified peer ID is the expected one.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(want) => want == id,
            Self::TrustDomain(td) => id.is_member_of(td),
        }
    }

    /// The trust domain the peer must belong to.
    pub fn trust_domain_str(&self) -> &str {
        match self {
            Self::Exact(id) => id.trust_domain_str(),
            Self::TrustDomain(td) => td.as_str(),
        }
    }
}

impl From<SpiffeId> for ExpectedIdentity {
    fn from(id: SpiffeId) -> Self {
        Self::Exact(id)
    }
}

impl From<TrustDomain> for ExpectedIdentity {
    fn from(td: TrustDomain) -> Self {
        Self::TrustDomain(td)
    }
}

impl FromStr for ExpectedIdentity {
    type Err = crate::identity::InvalidSpiffeId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = SpiffeId::new(s)?;
        Ok(if id.is_workload() {
            Self::Exact(id)
        } else {
            Self::TrustDomain(id.trust_domain())
        })
    }
}

impl TryFrom<String> for ExpectedIdentity {
    type Error = crate::identity::InvalidSpiffeId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ExpectedIdentity> for String {
    fn from(e: ExpectedIdentity) -> Self {
        e.to_string()
    }
}

impl fmt::Display for ExpectedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => fmt::Display::fmt(id, f),
            Self::TrustDomain(td) => write!(f, "spiffe://{td}"),
        }
    }
}

impl fmt::Debug for ExpectedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => f.debug_tuple("Exact").field(id).finish(),
            Self::TrustDomain(td) => f.debug_tuple("TrustDomain").field(td).finish(),
        }
    }
}
