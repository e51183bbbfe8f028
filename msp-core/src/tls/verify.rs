//! rustls verifiers checking X509-SVIDs on top of WebPKI chain
//! verification, certificate resolvers reading the current credentials, and
//! the rustls configurations built from them.

use super::credentials::{Bundle, Credentials, WorkloadIdentity, provider};
use super::error::{SvidError, TlsError, to_rustls};
use super::svid::{ExpectedIdentity, svid_of};
use crate::identity::{SpiffeId, TrustDomain};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fmt;
use std::sync::Arc;

/// Resolves our certificate from the current credentials, on both sides.
pub(crate) struct CurrentCert(pub(crate) WorkloadIdentity);

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CurrentCert")
            .field(&self.0.spiffe_id())
            .finish()
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current_key())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn domains_list(domains: &[TrustDomain]) -> String {
    domains
        .iter()
        .map(TrustDomain::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the X509-SVID rules of a peer's leaf and returns its ID (the
/// chain is verified separately, against the bundle of that ID's domain).
fn check_leaf(end_entity: &CertificateDer<'_>) -> Result<SpiffeId, rustls::Error> {
    svid_of(end_entity).map(|i| i.spiffe_id).map_err(to_rustls)
}

/// The handshake-signature methods both verifiers share: checked with the
/// ring provider's algorithms (the certificate itself was verified by
/// `verify_*_cert`).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &provider().signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// The CAs of the trust domain `id` claims: a peer is verified against its
/// own trust domain's bundle only, so one domain's CA cannot vouch for
/// another domain's workloads.
fn bundle_of<'c>(creds: &'c Credentials, id: &SpiffeId) -> Result<&'c Bundle, rustls::Error> {
    creds.bundle(id.trust_domain_str()).ok_or_else(|| {
        to_rustls(SvidError::NoBundle {
            trust_domain: id.trust_domain_str().to_owned(),
        })
    })
}

/// The server's verifier of client certificates: the X509-SVID rules and
/// the accepted trust domains, then WebPKI against the bundle of the
/// client's trust domain.
pub(crate) struct SvidClientVerifier {
    identity: WorkloadIdentity,
    accepted: Arc<[TrustDomain]>,
}

impl fmt::Debug for SvidClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidClientVerifier")
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for SvidClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle rotates; msp's clients present their one certificate
        // whatever the hints, so none are sent.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = check_leaf(end_entity)?;
        if !self.accepted.iter().any(|td| id.is_member_of(td)) {
            return Err(to_rustls(SvidError::UntrustedDomain {
                id,
                accepted: domains_list(&self.accepted),
            }));
        }
        let creds = self.identity.current();
        let bundle = bundle_of(&creds, &id)?;
        bundle
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The client's verifier of server certificates: the X509-SVID rules, WebPKI
/// chain verification against the bundle of the server's trust domain (no
/// DNS name check: an SVID is named by its SPIFFE ID), then the expected
/// identity.
pub(crate) struct SvidServerVerifier {
    identity: WorkloadIdentity,
    expected: ExpectedIdentity,
}

impl fmt::Debug for SvidServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidServerVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = check_leaf(end_entity)?;
        let creds = self.identity.current();
        let bundle = bundle_of(&creds, &found)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &bundle.roots,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        if !self.expected.matches(&found) {
            return Err(to_rustls(SvidError::UnexpectedIdentity {
                expected: self.expected.clone(),
                found,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// A server configuration requiring client SVIDs from `accepted` trust
/// domains, presenting the identity's current certificate. Resumption is
/// off so that every connection is verified against the current bundle and
/// sees the current certificate.
pub(crate) fn server_config(
    identity: &WorkloadIdentity,
    accepted: Vec<TrustDomain>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    if accepted.is_empty() {
        return Err(TlsError::Config {
            reason: "no trust domain accepted".to_owned(),
        });
    }
    let verifier = Arc::new(SvidClientVerifier {
        identity: identity.clone(),
        accepted: accepted.into(),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(CurrentCert(identity.clone())));
    config.alpn_protocols = alpn;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client configuration presenting the identity's current certificate
/// and accepting only a server that is `expected`.
pub(crate) fn client_config(
    identity: &WorkloadIdentity,
    expected: ExpectedIdentity,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = Arc::new(SvidServerVerifier {
        identity: identity.clone(),
        expected,
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(CurrentCert(identity.clone())));
    config.alpn_protocols = alpn;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The verified SPIFFE ID of a connection's peer, from its end-entity
/// certificate (already verified during the handshake).
pub(crate) fn peer_id(certs: Option<&[CertificateDer<'static>]>) -> Option<SpiffeId> {
    let leaf = certs?.first()?;
    svid_of(leaf).ok().map(|i| i.spiffe_id)
}
