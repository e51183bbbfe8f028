//! Helpers shared by the mTLS test files: certificates from the dev CA,
//! an axum app answering with the caller's identity, msp and raw rustls
//! clients.
#![allow(dead_code)] // each test file uses some of them

use axum::{Router, extract::Extension, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use msp_core::identity::{PeerIdentity, TrustDomain};
use msp_core::tls::dev::{DevCa, IssuedCert};
use msp_core::tls::{MtlsConnector, MtlsListener, WorkloadIdentity, with_peer_identity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) const DAY: Duration = Duration::from_secs(86_400);

pub(crate) fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

pub(crate) fn identity(ca: &DevCa, cert: &IssuedCert) -> WorkloadIdentity {
    WorkloadIdentity::from_pem(
        cert.cert_pem().as_bytes(),
        cert.key_pem().as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .unwrap()
}

pub(crate) fn workload(ca: &DevCa, service: &str) -> WorkloadIdentity {
    identity(ca, &ca.issue(service).unwrap())
}

/// The app every test serves: who is calling.
pub(crate) fn app() -> Router {
    Router::new().route(
        "/whoami",
        get(|peer: Option<Extension<PeerIdentity>>| async move {
            match peer {
                Some(Extension(p)) => p.to_string(),
                None => "anonymous".to_owned(),
            }
        }),
    )
}

pub(crate) async fn serve(listener: MtlsListener) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, with_peer_identity(app())).await });
    addr
}

pub(crate) async fn serve_strict(server: &WorkloadIdentity) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(MtlsListener::new(tcp, server).unwrap()).await
}

/// A GET through an msp client presenting `client` and expecting `expected`.
pub(crate) async fn msp_get(
    client: &WorkloadIdentity,
    expected: &str,
    addr: SocketAddr,
) -> Result<(String, Option<PeerIdentity>), BoxError> {
    let connector = MtlsConnector::new(client, expected.parse()?)?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let res = client.get(format!("http://{addr}/whoami").parse()?).await?;
    let server = res.extensions().get::<PeerIdentity>().cloned();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((String::from_utf8(body.to_vec())?, server))
}

/// Test-only: accepts any server certificate, so the tests below exercise
/// the server's checks of whatever client certificate they present.
#[derive(Debug)]
pub(crate) struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A GET over TLS with a plain rustls client presenting `cert` (or none),
/// whatever the certificate is.
pub(crate) async fn raw_get(
    addr: SocketAddr,
    cert: Option<&IssuedCert>,
) -> Result<String, BoxError> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyServer));
    let config = match cert {
        Some(c) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(c.cert_pem().as_bytes())?],
            PrivateKeyDer::from_pem_slice(c.key_pem().as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    http1_get(TokioIo::new(tls)).await
}

/// A GET /whoami over an established connection.
pub(crate) async fn http1_get<I>(io: I) -> Result<String, BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/whoami")
        .header("host", "test")
        .body(Empty::new())?;
    let res = send.send_request(req).await?;
    let body = res.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

pub(crate) async fn plain_get(addr: SocketAddr) -> Result<String, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    http1_get(TokioIo::new(tcp)).await
}
