//! A workload's credentials (certificate chain, private key, trust bundle)
//! loaded from PEM files and rotated on change.

use super::error::TlsError;
use super::svid::{SvidInfo, svid_of};
use crate::identity::SpiffeId;
use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;

/// The gauge of seconds left until a workload certificate's `notAfter`,
/// labelled `spiffe_id`.
pub const CERT_EXPIRY_GAUGE: &str = "msp_tls_certificate_expiry_seconds";

/// The ring crypto provider every msp TLS configuration uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Where a workload's credentials live: the certificate chain (leaf
/// first), the private key and the trust bundle (the CA certificates of
/// the accepted trust domains), all PEM.
///
/// A bundle CA whose URI SAN is a trust domain's SPIFFE ID
/// (`spiffe://other`, as the [development CA](super::dev) writes) vouches
/// for that trust domain only; one without such a SAN for the workload's
/// own trust domain. A peer is verified against the CAs of the trust
/// domain its SPIFFE ID names, so one domain's CA cannot mint another's
/// identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
}

impl IdentityFiles {
    /// Credentials at these three paths.
    pub fn new(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            bundle: bundle.into(),
        }
    }

    /// The layout the [development CA](super::dev) writes:
    /// `{dir}/{service}.pem`, `{dir}/{service}-key.pem` and `{dir}/ca.pem`.
    pub fn in_dir(dir: impl AsRef<Path>, service: &str) -> Self {
        let dir = dir.as_ref();
        Self::new(
            dir.join(format!("{service}.pem")),
            dir.join(format!("{service}-key.pem")),
            dir.join("ca.pem"),
        )
    }

    /// The certificate chain file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The private key file.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// The trust bundle file.
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    fn read(&self) -> Result<Pems, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Io {
                path: p.to_owned(),
                source,
            })
        };
        Ok(Pems {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            bundle: read(&self.bundle)?,
        })
    }
}

struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    bundle: Vec<u8>,
}

impl Pems {
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.cert.hash(&mut h);
        self.key.hash(&mut h);
        self.bundle.hash(&mut h);
        h.finish()
    }
}

/// The CA certificates of one trust domain, and a WebPKI client verifier
/// over them.
pub(crate) struct Bundle {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
}

/// The trust domain a bundle CA vouches for: the SPIFFE ID of a trust
/// domain in its URI SAN (`spiffe://shop`), else `default`.
fn ca_trust_domain(ca: &[u8], default: &str) -> String {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(ca) else {
        return default.to_owned();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return default.to_owned();
    };
    san.value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) => SpiffeId::new(uri)
                .ok()
                .filter(|id| !id.is_workload())
                .map(|id| id.trust_domain_str().to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| default.to_owned())
}

/// One consistent set of credentials.
pub(crate) struct Credentials {
    pub(crate) key: Arc<CertifiedKey>,
    /// Per trust domain: a peer claiming an ID in a trust domain is
    /// verified against that domain's CAs only.
    bundles: HashMap<String, Bundle>,
    pub(crate) svid: SvidInfo,
    fingerprint: u64,
    warned: AtomicBool,
}

impl Credentials {
    /// The bundle of `trust_domain`.
    pub(crate) fn bundle(&self, trust_domain: &str) -> Option<&Bundle> {
        self.bundles.get(trust_domain)
    }

    fn parse(pems: &Pems, names: &IdentityFiles) -> Result<Self, TlsError> {
        let pem_err = |path: &Path, e: rustls_pki_types::pem::Error| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(&pems.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&names.cert, e))?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::Pem {
                path: names.cert.clone(),
                reason: "no CERTIFICATE".to_owned(),
            });
        };
        let svid = svid_of(leaf).map_err(|source| TlsError::Svid {
            path: names.cert.clone(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| pem_err(&names.key, e))?;
        let own_domain = svid.spiffe_id.trust_domain_str();
        let mut stores: HashMap<String, RootCertStore> = HashMap::new();
        for ca in CertificateDer::pem_slice_iter(&pems.bundle) {
            let ca = ca.map_err(|e| pem_err(&names.bundle, e))?;
            let domain = ca_trust_domain(&ca, own_domain);
            stores
                .entry(domain)
                .or_insert_with(RootCertStore::empty)
                .add(ca)
                .map_err(|e| TlsError::Credentials {
                    reason: format!("{}: {e}", names.bundle.display()),
                })?;
        }
        if stores.is_empty() {
            return Err(TlsError::Pem {
                path: names.bundle.clone(),
                reason: "no CERTIFICATE in the trust bundle".to_owned(),
            });
        }
        let provider = provider();
        let key =
            CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Credentials {
                reason: format!("{}: {e}", names.key.display()),
            })?;
        let mut bundles = HashMap::with_capacity(stores.len());
        for (domain, roots) in stores {
            let roots = Arc::new(roots);
            let client_verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Credentials {
                        reason: format!("{}: {e}", names.bundle.display()),
                    })?;
            bundles.insert(
                domain,
                Bundle {
                    roots,
                    client_verifier,
                },
            );
        }
        Ok(Self {
            key: Arc::new(key),
            bundles,
            svid,
            fingerprint: pems.fingerprint(),
            warned: AtomicBool::new(false),
        })
    }
}

/// What [`WorkloadIdentity::reload_now`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reload {
    /// The files are the ones already loaded.
    Unchanged,
    /// New credentials were loaded; new handshakes use them.
    Rotated {
        /// The SPIFFE ID of the new certificate.
        spiffe_id: SpiffeId,
        /// Its `notAfter`.
        not_after: SystemTime,
    },
}

/// A workload's identity: its current X509-SVID, private key and trust
/// bundle, shared by every listener and connector built from it.
///
/// Cloning is cheap; clones share the credentials. Loaded from
/// [`IdentityFiles`], it can be reloaded ([`reload_now`](Self::reload_now))
/// or watched ([`watch`](Self::watch)): new handshakes then use the new
/// certificate and trust bundle while open connections keep going. Files
/// that fail to load (half-written, a key that does not match, not an
/// X509-SVID) leave the last good credentials in place.
///
/// Every load sets the [`CERT_EXPIRY_GAUGE`] gauge; when less than a third
/// of the certificate's lifetime is left, a warning is logged (linkerd
/// renews at 70 % of the lifetime).
///
/// # Example
///
/// ```
/// use msp_core::tls::{dev::DevCa, IdentityFiles, Reload, WorkloadIdentity};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("msp-identity-doc-{}", std::process::id()));
/// let ca = DevCa::new("shop".parse()?)?;
/// ca.issue("order-service")?.write(&dir)?;
/// ca.write(&dir)?;
///
/// let identity = WorkloadIdentity::from_files(IdentityFiles::in_dir(&dir, "order-service"))?;
/// assert_eq!(identity.spiffe_id().as_str(), "spiffe://shop/order-service");
/// assert_eq!(identity.reload_now()?, Reload::Unchanged);
///
/// // A renewed certificate is picked up by the next reload.
/// ca.issue("order-service")?.write(&dir)?;
/// assert!(matches!(identity.reload_now()?, Reload::Rotated { .. }));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WorkloadIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Credentials>,
    files: Option<IdentityFiles>,
    /// Fingerprint of files that failed to load and were reported.
    last_bad: Mutex<Option<u64>>,
}

impl WorkloadIdentity {
    /// Loads the credentials from `files`.
    pub fn from_files(files: IdentityFiles) -> Result<Self, TlsError> {
        let creds = Credentials::parse(&files.read()?, &files)?;
        Ok(Self::with(creds, Some(files)))
    }

    /// Credentials given as PEM bytes (certificate chain, private key,
    /// trust bundle); they are never reloaded.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], bundle: &[u8]) -> Result<Self, TlsError> {
        let pems = Pems {
            cert: cert_chain.to_vec(),
            key: key.to_vec(),
            bundle: bundle.to_vec(),
        };
        let names = IdentityFiles::new("<certificate>", "<key>", "<trust bundle>");
        Ok(Self::with(Credentials::parse(&pems, &names)?, None))
    }

    fn with(creds: Credentials, files: Option<IdentityFiles>) -> Self {
        let id = Self {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(creds),
                files,
                last_bad: Mutex::new(None),
            }),
        };
        id.record_expiry();
        id
    }

    pub(crate) fn current(&self) -> Arc<Credentials> {
        self.inner.current.load_full()
    }

    pub(crate) fn current_key(&self) -> Arc<CertifiedKey> {
        self.inner.current.load().key.clone()
    }

    /// The SPIFFE ID of the current certificate.
    pub fn spiffe_id(&self) -> SpiffeId {
        self.inner.current.load().svid.spiffe_id.clone()
    }

    /// The current certificate's ID and validity.
    pub fn svid(&self) -> SvidInfo {
        self.inner.current.load().svid.clone()
    }

    /// The files this identity was loaded from (`None` for
    /// [`from_pem`](Self::from_pem)).
    pub fn files(&self) -> Option<&IdentityFiles> {
        self.inner.files.as_ref()
    }

    /// Reads the files now and, if their content changed and loads, swaps
    /// the credentials in. Blocking file I/O: from async code prefer
    /// [`watch`](Self::watch) (or `spawn_blocking`).
    ///
    /// A failure keeps the current credentials and is returned (and
    /// logged). New files naming another SPIFFE ID (another workload or
    /// trust domain) are such a failure ([`TlsError::Credentials`]): a
    /// rotation never changes who the workload is.
    pub fn reload_now(&self) -> Result<Reload, TlsError> {
        self.reload(true)
    }

    fn reload(&self, report_again: bool) -> Result<Reload, TlsError> {
        let Some(files) = &self.inner.files else {
            return Ok(Reload::Unchanged);
        };
        let pems = match files.read() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the workload credentials; keeping the current ones");
                return Err(e);
            }
        };
        let fingerprint = pems.fingerprint();
        if fingerprint == self.inner.current.load().fingerprint {
            return Ok(Reload::Unchanged);
        }
        let mut last_bad = self
            .inner
            .last_bad
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !report_again && *last_bad == Some(fingerprint) {
            return Ok(Reload::Unchanged);
        }
        let parsed = Credentials::parse(&pems, files).and_then(|creds| {
            let current = self.inner.current.load();
            let current = &current.svid.spiffe_id;
            if creds.svid.spiffe_id == *current {
                return Ok(creds);
            }
            Err(TlsError::Credentials {
                reason: format!(
                    "the new certificate is for {}, not {current}: rotation renews a \
                     workload's certificate, it never changes its identity",
                    creds.svid.spiffe_id
                ),
            })
        });
        match parsed {
            Ok(creds) => {
                *last_bad = None;
                drop(last_bad);
                let reload = Reload::Rotated {
                    spiffe_id: creds.svid.spiffe_id.clone(),
                    not_after: creds.svid.not_after,
                };
                tracing::info!(spiffe_id = %creds.svid.spiffe_id, "workload credentials rotated");
                self.inner.current.store(Arc::new(creds));
                self.record_expiry();
                Ok(reload)
            }
            Err(e) => {
                *last_bad = Some(fingerprint);
                tracing::error!(error = %e, "new workload credentials rejected; keeping the last good ones");
                Err(e)
            }
        }
    }

    /// Sets the [`CERT_EXPIRY_GAUGE`] gauge for the current certificate and
    /// warns (once per certificate) when less than a third of its lifetime
    /// is left.
    pub fn record_expiry(&self) {
        let creds = self.inner.current.load();
        let svid = &creds.svid;
        let now = SystemTime::now();
        let remaining = svid.remaining(now);
        metrics::gauge!(CERT_EXPIRY_GAUGE, "spiffe_id" => svid.spiffe_id.to_string())
            .set(remaining.as_secs_f64());
        if remaining < svid.lifetime() / 3 && !creds.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                spiffe_id = %svid.spiffe_id,
                remaining = ?Duration::from_secs(remaining.as_secs()),
                "workload certificate expires soon (less than a third of its lifetime left)"
            );
        }
    }

    /// Starts a task that re-reads the files every `interval` (tokio time)
    /// and rotates the credentials when they changed; it also refreshes the
    /// expiry gauge. The task stops when the returned guard is dropped.
    ///
    /// A bad new set of files is logged once and the last good credentials
    /// stay until the files change again. An `interval` shorter than
    /// [`MIN_WATCH_INTERVAL`] (100 ms; `Duration::ZERO` included) is raised
    /// to it. Must be called within a tokio runtime.
    pub fn watch(&self, interval: Duration) -> IdentityWatcher {
        let identity = self.clone();
        let interval = interval.max(MIN_WATCH_INTERVAL);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let id = identity.clone();
                // Errors are logged by `reload`.
                let _ = tokio::task::spawn_blocking(move || id.reload(false)).await;
                identity.record_expiry();
            }
        });
        IdentityWatcher { task }
    }
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let creds = self.inner.current.load();
        f.debug_struct("WorkloadIdentity")
            .field("spiffe_id", &creds.svid.spiffe_id)
            .field("not_after", &creds.svid.not_after)
            .field("files", &self.inner.files)
            .finish()
    }
}

/// The shortest interval [`WorkloadIdentity::watch`] re-reads the files
/// at: a shorter one (or zero) is raised to it.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The task started by [`WorkloadIdentity::watch`]; dropping it stops the
/// watching.
#[derive(Debug)]
pub struct IdentityWatcher {
    task: JoinHandle<()>,
}

impl Drop for IdentityWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
