//! Errors of msp's mTLS: [`SvidError`] (a certificate breaks the X509-SVID
//! rules or is not the expected identity) and [`TlsError`] (loading
//! credentials, building configurations, connecting).

use super::svid::ExpectedIdentity;
use crate::identity::{InvalidSpiffeId, SpiffeId};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a peer's (or our own) certificate is not an acceptable X509-SVID.
///
/// During a handshake it travels inside rustls's error;
/// [`TlsError::svid_error`] digs it out of a failed connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate is not valid DER X.509.
    #[error("malformed certificate: {reason}")]
    Malformed {
        /// The parser's message.
        reason: String,
    },
    /// The certificate has no URI SAN.
    #[error("certificate has no URI SAN (no SPIFFE ID)")]
    NoSpiffeId,
    /// The certificate has more than one URI SAN.
    #[error("certificate has {count} URI SANs, an X509-SVID has exactly one")]
    ManyUris {
        /// How many.
        count: usize,
    },
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN {uri:?} is not a SPIFFE ID: {source}")]
    BadSpiffeId {
        /// The URI SAN.
        uri: String,
        /// Why it was rejected.
        source: InvalidSpiffeId,
    },
    /// The SPIFFE ID has no path: it names a trust domain, not a workload.
    #[error("{0} names a trust domain, not a workload")]
    NotAWorkload(SpiffeId),
    /// The leaf certificate is a CA (basic constraints `CA=true`).
    #[error("leaf certificate is a CA")]
    IsCa,
    /// Key usage is absent, lacks `digitalSignature` or has
    /// `keyCertSign`/`cRLSign`.
    #[error(
        "leaf key usage {usage:?} must have digitalSignature and neither keyCertSign nor cRLSign"
    )]
    KeyUsage {
        /// The key usage found.
        usage: String,
    },
    /// The ID belongs to a trust domain that is not accepted.
    #[error("{id} is not in an accepted trust domain ({accepted})")]
    UntrustedDomain {
        /// The peer's ID.
        id: SpiffeId,
        /// The accepted trust domains, comma separated.
        accepted: String,
    },
    /// The trust bundle holds no CA for the peer's trust domain.
    #[error("no trust bundle for trust domain {trust_domain:?}")]
    NoBundle {
        /// The peer's trust domain.
        trust_domain: String,
    },
    /// The server's ID is not the one the client expected for the target.
    #[error("server is {found}, expected {expected}")]
    UnexpectedIdentity {
        /// What the client expected.
        expected: ExpectedIdentity,
        /// Who answered.
        found: SpiffeId,
    },
}

/// Why loading credentials, building a TLS configuration, connecting or
/// issuing development certificates failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A PEM file holds nothing usable of the kind expected.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },
    /// Our own certificate is not a valid X509-SVID.
    #[error("{}: {source}", path.display())]
    Svid {
        /// The certificate file.
        path: PathBuf,
        /// The broken rule.
        source: SvidError,
    },
    /// The private key is not usable or does not match the certificate, or
    /// the trust bundle holds a certificate that is not a usable anchor.
    #[error("credentials rejected: {reason}")]
    Credentials {
        /// rustls's message.
        reason: String,
    },
    /// A TLS configuration could not be built (for instance no trust
    /// domain accepted).
    #[error("invalid TLS configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The TCP connection could not be established.
    #[error("connect to {target} failed: {source}")]
    Connect {
        /// The target address.
        target: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The TLS handshake failed (the peer's certificate may have been
    /// rejected: see [`svid_error`](Self::svid_error)).
    #[error("TLS handshake with {target} failed: {source}")]
    Handshake {
        /// The target address.
        target: String,
        /// The error tokio-rustls reported.
        source: io::Error,
    },
    /// The handshake did not finish in time.
    #[error("TLS handshake with {target} timed out after {timeout:?}")]
    HandshakeTimeout {
        /// The target address.
        target: String,
        /// The limit.
        timeout: Duration,
    },
    /// The development CA could not generate a key or certificate.
    #[error("certificate generation failed: {reason}")]
    Generate {
        /// rcgen's message.
        reason: String,
    },
}

impl TlsError {
    /// The X509-SVID rule the peer's certificate broke, when a handshake
    /// failed because of it.
    pub fn svid_error(&self) -> Option<&SvidError> {
        match self {
            TlsError::Handshake { source, .. } => svid_error_in(source),
            TlsError::Svid { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Finds an [`SvidError`] inside an I/O error from a rustls handshake.
pub(crate) fn svid_error_in(err: &io::Error) -> Option<&SvidError> {
    let rustls_err = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match rustls_err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<SvidError>()
        }
        _ => None,
    }
}

/// Wraps an [`SvidError`] as the rustls error a verifier returns.
pub(crate) fn to_rustls(err: SvidError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        std::sync::Arc::new(err),
    )))
}
