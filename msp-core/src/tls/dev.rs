//! A development certificate authority: creates a trust domain's CA and
//! issues X509-SVIDs for named services into a directory (the layout
//! [`IdentityFiles::in_dir`](super::IdentityFiles::in_dir) reads). For
//! laptops and tests, not production: the CA key sits in a file next to
//! the certificates.
//!
//! Files written to the directory: `ca.pem` (the trust bundle),
//! `ca-key.pem`, and for each service `{service}.pem` and
//! `{service}-key.pem` (keys are written with mode 0600 on Unix). The
//! example binary wraps [`ensure_dir`]:
//! `cargo run -p msp-core --features tls --example dev_ca -- --trust-domain shop --out certs order-service payment-service`.
//!
//! # Example
//!
//! ```
//! use msp_core::tls::dev::{self, CertOptions, DevCa, Issued};
//! use msp_core::tls::{IdentityFiles, WorkloadIdentity};
//! use std::time::{Duration, SystemTime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("msp-dev-ca-doc-{}", std::process::id()));
//! let report = dev::ensure_dir(&dir, &"shop".parse()?, &["order-service"])?;
//! assert_eq!(report[0].1, Issued::New);
//! let id = WorkloadIdentity::from_files(IdentityFiles::in_dir(&dir, "order-service"))?;
//! assert_eq!(id.spiffe_id().as_str(), "spiffe://shop/order-service");
//!
//! // A second run reuses the valid files.
//! let report = dev::ensure_dir(&dir, &"shop".parse()?, &["order-service"])?;
//! assert_eq!(report[0].1, Issued::Reused);
//!
//! // Bad certificates for tests: an expired one.
//! let ca = DevCa::load_or_create(&dir, &"shop".parse()?)?;
//! let day = Duration::from_secs(86_400);
//! let now = SystemTime::now();
//! let expired = ca.issue_with(CertOptions::workload("order-service").validity(now - 2 * day, now - day))?;
//! assert!(expired.not_after() < now);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use super::credentials::provider;
use super::error::TlsError;
use super::svid::svid_of;
use crate::identity::{SpiffeId, TrustDomain};
use rand::RngCore;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::RootCertStore;
use rustls::server::ParsedCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);

fn generate_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate {
        reason: e.to_string(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Sets a certificate's validity from `SystemTime`s (rcgen takes the `time`
/// crate's dates; x509-parser converts to the same type).
fn set_validity(
    params: &mut CertificateParams,
    from: SystemTime,
    until: SystemTime,
) -> Result<(), TlsError> {
    let ts = |t: SystemTime| {
        let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        x509_parser::time::ASN1Time::from_timestamp(secs).map_err(|e| TlsError::Generate {
            reason: format!("date out of range: {e}"),
        })
    };
    params.not_before = ts(from)?.to_datetime();
    params.not_after = ts(until)?.to_datetime();
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(trust_domain: &TrustDomain) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "msp development CA");
    dn.push(DnType::CommonName, format!("{trust_domain} dev CA"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // The trust domain's SPIFFE ID, which places this CA in the domain's
    // bundle when several domains share a bundle file.
    if let Ok(uri) = Ia5String::try_from(trust_domain.id_string()) {
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    params
}

/// Writes `contents` to `path` through a temporary file and a rename, so a
/// watcher never reads half a file; `secret` files get mode 0600 on Unix.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// What to put into a certificate [`DevCa::issue_with`] issues.
#[derive(Debug, Clone)]
#[must_use]
pub struct CertOptions {
    name: String,
    uris: Option<Vec<String>>,
    validity: Option<(SystemTime, SystemTime)>,
    ca: bool,
}

impl CertOptions {
    /// A workload certificate for `service`: URI SAN
    /// `spiffe://{trust domain}/{service}`, valid from an hour ago for 30
    /// days, not a CA, key usage `digitalSignature`, extended key usages
    /// server and client authentication. Files are named after `service`.
    pub fn workload(service: impl Into<String>) -> Self {
        Self {
            name: service.into(),
            uris: None,
            validity: None,
            ca: false,
        }
    }

    /// Replaces the URI SANs (any strings, to make certificates breaking
    /// the X509-SVID rules in tests).
    pub fn uris<I, U>(mut self, uris: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.uris = Some(uris.into_iter().map(Into::into).collect());
        self
    }

    /// The validity period.
    pub fn validity(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.validity = Some((not_before, not_after));
        self
    }

    /// Issues a CA certificate (basic constraints `CA=true`, key usage
    /// `keyCertSign` and `cRLSign`) instead: no valid X509-SVID leaf.
    pub fn ca(mut self, ca: bool) -> Self {
        self.ca = ca;
        self
    }
}

/// A certificate and key from [`DevCa::issue`].
pub struct IssuedCert {
    name: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    not_after: SystemTime,
}

impl IssuedCert {
    /// The name files are written under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The end of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Writes `{dir}/{name}.pem` and `{dir}/{name}-key.pem` (each through a
    /// rename; the key first, so a watcher sees the pair change together as
    /// far as possible). Creates `dir` if needed.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<(), TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_file(
            &dir.join(format!("{}-key.pem", self.name)),
            &self.key_pem,
            true,
        )?;
        write_file(
            &dir.join(format!("{}.pem", self.name)),
            &self.cert_pem,
            false,
        )
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("name", &self.name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A development CA for one trust domain (see the [module docs](self)).
pub struct DevCa {
    trust_domain: TrustDomain,
    params: CertificateParams,
    key: KeyPair,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl DevCa {
    /// A new CA (a fresh P-256 key), valid from an hour ago for ten years.
    pub fn new(trust_domain: TrustDomain) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(generate_err)?;
        let mut params = ca_params(&trust_domain);
        let now = SystemTime::now();
        set_validity(
            &mut params,
            now - Duration::from_secs(3600),
            now + 3650 * DAY,
        )?;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(generate_err)?;
        Ok(Self {
            trust_domain,
            params,
            key,
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
        })
    }

    /// The CA in `dir` (`ca.pem`, `ca-key.pem`) when both files are there,
    /// the certificate is this trust domain's dev CA, valid now and the key
    /// matches it; otherwise a [new](Self::new) one, written to `dir`.
    pub fn load_or_create(
        dir: impl AsRef<Path>,
        trust_domain: &TrustDomain,
    ) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        if let Some(ca) = Self::load(dir, trust_domain) {
            return Ok(ca);
        }
        let ca = Self::new(trust_domain.clone())?;
        ca.write(dir)?;
        Ok(ca)
    }

    fn load(dir: &Path, trust_domain: &TrustDomain) -> Option<Self> {
        let cert_pem = std::fs::read_to_string(dir.join("ca.pem")).ok()?;
        let key_pem = std::fs::read_to_string(dir.join("ca-key.pem")).ok()?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
        let key = KeyPair::from_pem(&key_pem).ok()?;
        let params = ca_params(trust_domain);
        {
            use x509_parser::prelude::FromDer;
            let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&cert_der).ok()?;
            let expected_cn = format!("{trust_domain} dev CA");
            let cn_matches = cert
                .subject()
                .iter_common_name()
                .any(|cn| cn.as_str().ok() == Some(expected_cn.as_str()));
            let key_matches = cert.public_key().subject_public_key.data.as_ref()
                == rcgen::PublicKeyData::der_bytes(&key);
            if !cn_matches || !key_matches || !cert.is_ca() || !cert.validity().is_valid() {
                return None;
            }
        }
        Some(Self {
            trust_domain: trust_domain.clone(),
            params,
            key,
            cert_der,
            cert_pem,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificate (the trust bundle), PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Writes `{dir}/ca.pem` and `{dir}/ca-key.pem`, creating `dir`.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<(), TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_file(&dir.join("ca-key.pem"), &self.key.serialize_pem(), true)?;
        write_file(&dir.join("ca.pem"), &self.cert_pem, false)
    }

    /// Issues a workload certificate for `service`
    /// ([`CertOptions::workload`]).
    pub fn issue(&self, service: &str) -> Result<IssuedCert, TlsError> {
        self.issue_with(CertOptions::workload(service))
    }

    /// Issues a certificate as `options` say.
    pub fn issue_with(&self, options: CertOptions) -> Result<IssuedCert, TlsError> {
        let key = KeyPair::generate().map_err(generate_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, options.name.clone());
        params.distinguished_name = dn;
        let uris = match options.uris {
            Some(uris) => uris,
            None => vec![format!("spiffe://{}/{}", self.trust_domain, options.name)],
        };
        for uri in uris {
            let uri = Ia5String::try_from(uri).map_err(|e| TlsError::Generate {
                reason: e.to_string(),
            })?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        let now = SystemTime::now();
        let (from, until) = options
            .validity
            .unwrap_or((now - Duration::from_secs(3600), now + 30 * DAY));
        set_validity(&mut params, from, until)?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        if options.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
        } else {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(generate_err)?;
        Ok(IssuedCert {
            name: options.name,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            not_after: until,
        })
    }

    /// Whether `cert` (DER) chains to this CA and is valid now.
    fn signed(&self, cert: &[u8]) -> bool {
        let mut roots = RootCertStore::empty();
        if roots.add(self.cert_der.clone()).is_err() {
            return false;
        }
        let der = CertificateDer::from(cert);
        let Ok(parsed) = ParsedCertificate::try_from(&der) else {
            return false;
        };
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &[],
            UnixTime::now(),
            provider().signature_verification_algorithms.all,
        )
        .is_ok()
    }
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// Whether [`ensure_dir`] issued a service's certificate or kept the one
/// on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Issued {
    /// A new certificate and key were written.
    New,
    /// The files on disk were valid and kept.
    Reused,
}

/// Makes `dir` hold a CA for `trust_domain` and a valid certificate for
/// each of `services`, reusing what is there: the CA when
/// [`DevCa::load_or_create`] accepts it, a service's files when they load
/// as a [`WorkloadIdentity`](super::WorkloadIdentity), name
/// `spiffe://{trust domain}/{service}`, chain to the CA and have more than
/// a third of their lifetime left.
pub fn ensure_dir(
    dir: impl AsRef<Path>,
    trust_domain: &TrustDomain,
    services: &[&str],
) -> Result<Vec<(String, Issued)>, TlsError> {
    let dir = dir.as_ref();
    let ca = DevCa::load_or_create(dir, trust_domain)?;
    let mut report = Vec::with_capacity(services.len());
    for &service in services {
        let expected =
            SpiffeId::from_parts(trust_domain, service).map_err(|e| TlsError::Generate {
                reason: format!("service {service:?}: {e}"),
            })?;
        let issued = if reusable(&ca, dir, service, &expected) {
            Issued::Reused
        } else {
            ca.issue(service)?.write(dir)?;
            Issued::New
        };
        report.push((service.to_owned(), issued));
    }
    Ok(report)
}

fn reusable(ca: &DevCa, dir: &Path, service: &str, expected: &SpiffeId) -> bool {
    let files = super::IdentityFiles::in_dir(dir, service);
    let Ok(identity) = super::WorkloadIdentity::from_files(files.clone()) else {
        return false;
    };
    let svid = identity.svid();
    if &svid.spiffe_id != expected || svid.remaining(SystemTime::now()) < svid.lifetime() / 3 {
        return false;
    }
    let Ok(pem) = std::fs::read(files.cert()) else {
        return false;
    };
    let Ok(leaf) = CertificateDer::from_pem_slice(&pem) else {
        return false;
    };
    svid_of(&leaf).is_ok() && ca.signed(&leaf)
}
