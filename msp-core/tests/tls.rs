//! mTLS over real loopback connections: what a strict or permissive
//! listener accepts and refuses, what the client accepts, and rotation.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use axum::{Router, extract::Extension, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use msp_core::identity::{PeerIdentity, TrustDomain};
use msp_core::tls::dev::{CertOptions, DevCa, IssuedCert};
use msp_core::tls::{
    ExpectedIdentity, IdentityFiles, Mode, MtlsConnector, MtlsListener, Reload, SvidError,
    TlsError, WorkloadIdentity, svid_of, with_peer_identity,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DAY: Duration = Duration::from_secs(86_400);

fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

fn identity(ca: &DevCa, cert: &IssuedCert) -> WorkloadIdentity {
    WorkloadIdentity::from_pem(
        cert.cert_pem().as_bytes(),
        cert.key_pem().as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .unwrap()
}

fn workload(ca: &DevCa, service: &str) -> WorkloadIdentity {
    identity(ca, &ca.issue(service).unwrap())
}

/// The app every test serves: who is calling.
fn app() -> Router {
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

async fn serve(listener: MtlsListener) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, with_peer_identity(app())).await });
    addr
}

async fn serve_strict(server: &WorkloadIdentity) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(MtlsListener::new(tcp, server).unwrap()).await
}

/// A GET through an msp client presenting `client` and expecting `expected`.
async fn msp_get(
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
struct AnyServer;

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
async fn raw_get(addr: SocketAddr, cert: Option<&IssuedCert>) -> Result<String, BoxError> {
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
async fn http1_get<I>(io: I) -> Result<String, BoxError>
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

#[tokio::test]
async fn strict_server_accepts_a_good_svid_and_the_handler_sees_its_spiffe_id() {
    let ca = DevCa::new(td("shop")).unwrap();
    let addr = serve_strict(&workload(&ca, "payment-service")).await;

    let (body, server) = msp_get(
        &workload(&ca, "order-service"),
        "spiffe://shop/payment-service",
        addr,
    )
    .await
    .unwrap();
    assert_eq!(body, "spiffe://shop/order-service");
    assert_eq!(
        server.unwrap().spiffe_id().as_str(),
        "spiffe://shop/payment-service"
    );

    // The raw client with a good certificate is served as well.
    let good = ca.issue("order-service").unwrap();
    assert_eq!(
        raw_get(addr, Some(&good)).await.unwrap(),
        "spiffe://shop/order-service"
    );
}

#[tokio::test]
async fn strict_server_refuses_bad_client_certificates_and_keeps_serving() {
    let ca = DevCa::new(td("shop")).unwrap();
    let other = DevCa::new(td("other")).unwrap();
    let addr = serve_strict(&workload(&ca, "payment-service")).await;
    let now = SystemTime::now();

    let no_cert = raw_get(addr, None).await;
    assert!(no_cert.is_err(), "no client certificate: {no_cert:?}");

    let foreign = other.issue("order-service").unwrap();
    let res = raw_get(addr, Some(&foreign)).await;
    assert!(res.is_err(), "another trust domain's CA: {res:?}");

    let expired = ca
        .issue_with(CertOptions::workload("order-service").validity(now - 2 * DAY, now - DAY))
        .unwrap();
    let res = raw_get(addr, Some(&expired)).await;
    assert!(res.is_err(), "expired: {res:?}");

    let two_uris = ca
        .issue_with(
            CertOptions::workload("order-service")
                .uris(["spiffe://shop/order-service", "spiffe://shop/admin"]),
        )
        .unwrap();
    let res = raw_get(addr, Some(&two_uris)).await;
    assert!(res.is_err(), "two URI SANs: {res:?}");

    let ca_leaf = ca
        .issue_with(CertOptions::workload("order-service").ca(true))
        .unwrap();
    let res = raw_get(addr, Some(&ca_leaf)).await;
    assert!(res.is_err(), "CA as leaf: {res:?}");

    let no_path = ca
        .issue_with(CertOptions::workload("order-service").uris(["spiffe://shop"]))
        .unwrap();
    let res = raw_get(addr, Some(&no_path)).await;
    assert!(res.is_err(), "trust domain ID as leaf: {res:?}");

    // Plaintext on a strict port is no handshake either.
    let res = plain_get(addr).await;
    assert!(res.is_err(), "plaintext on a strict port: {res:?}");

    // None of it stopped the accept loop.
    let good = ca.issue("order-service").unwrap();
    assert_eq!(
        raw_get(addr, Some(&good)).await.unwrap(),
        "spiffe://shop/order-service"
    );
}

#[tokio::test]
async fn a_trust_domain_in_the_bundle_is_refused_unless_accepted() {
    // The bundle trusts both CAs; the listener decides which domains it
    // accepts.
    let shop = DevCa::new(td("shop")).unwrap();
    let other = DevCa::new(td("other")).unwrap();
    let bundle = format!("{}{}", shop.cert_pem(), other.cert_pem());
    let server_cert = shop.issue("payment-service").unwrap();
    let server = WorkloadIdentity::from_pem(
        server_cert.cert_pem().as_bytes(),
        server_cert.key_pem().as_bytes(),
        bundle.as_bytes(),
    )
    .unwrap();
    let foreign = other.issue("order-service").unwrap();
    // Signed by shop's CA but claiming another trust domain.
    let impostor = shop
        .issue_with(CertOptions::workload("order-service").uris(["spiffe://other/order-service"]))
        .unwrap();

    let only_shop = serve_strict(&server).await;
    assert!(raw_get(only_shop, Some(&foreign)).await.is_err());
    assert!(raw_get(only_shop, Some(&impostor)).await.is_err());

    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let both = serve(
        MtlsListener::builder(&server)
            .accept_trust_domain(td("shop"))
            .accept_trust_domain(td("other"))
            .build(tcp)
            .unwrap(),
    )
    .await;
    assert_eq!(
        raw_get(both, Some(&foreign)).await.unwrap(),
        "spiffe://other/order-service"
    );
}

#[test]
fn svid_checks_name_the_broken_rule() {
    let ca = DevCa::new(td("shop")).unwrap();
    let der = |opts: CertOptions| ca.issue_with(opts).unwrap().cert_der().to_vec();
    let base = || CertOptions::workload("order-service");

    let info = svid_of(&der(base())).unwrap();
    assert_eq!(info.spiffe_id.as_str(), "spiffe://shop/order-service");
    assert_eq!(
        svid_of(&der(base().uris(["spiffe://shop/a", "spiffe://shop/b"]))),
        Err(SvidError::ManyUris { count: 2 })
    );
    assert_eq!(
        svid_of(&der(base().uris(Vec::<String>::new()))),
        Err(SvidError::NoSpiffeId)
    );
    assert!(matches!(
        svid_of(&der(base().uris(["https://shop/x"]))),
        Err(SvidError::BadSpiffeId { .. })
    ));
    assert!(matches!(
        svid_of(&der(base().uris(["spiffe://shop"]))),
        Err(SvidError::NotAWorkload(_))
    ));
    assert_eq!(svid_of(&der(base().ca(true))), Err(SvidError::IsCa));
    assert!(matches!(
        svid_of(ca.cert_der()),
        Err(SvidError::NoSpiffeId | SvidError::IsCa)
    ));
    assert!(matches!(
        svid_of(b"not a certificate"),
        Err(SvidError::Malformed { .. })
    ));

    // Our own credentials must be an SVID too.
    let bad = ca.issue_with(base().ca(true)).unwrap();
    let err = WorkloadIdentity::from_pem(
        bad.cert_pem().as_bytes(),
        bad.key_pem().as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.svid_error(), Some(&SvidError::IsCa));
}

#[tokio::test]
async fn client_refuses_a_server_that_is_not_the_expected_identity() {
    let ca = DevCa::new(td("shop")).unwrap();
    let addr = serve_strict(&workload(&ca, "payment-service")).await;
    let client = workload(&ca, "order-service");
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();

    let mut wrong =
        MtlsConnector::new(&client, "spiffe://shop/inventory-service".parse().unwrap()).unwrap();
    let err = wrong.call(uri.clone()).await.unwrap_err();
    assert!(
        matches!(
            err.svid_error(),
            Some(SvidError::UnexpectedIdentity { found, .. })
                if found.as_str() == "spiffe://shop/payment-service"
        ),
        "{err}"
    );
    // Through a hyper-util client the request fails too.
    assert!(
        msp_get(&client, "spiffe://shop/inventory-service", addr)
            .await
            .is_err()
    );

    // A trust domain expectation accepts any of its workloads, not others'.
    let mut domain =
        MtlsConnector::new(&client, ExpectedIdentity::TrustDomain(td("shop"))).unwrap();
    let stream = domain.call(uri.clone()).await.unwrap();
    assert_eq!(
        stream.peer_identity().spiffe_id().as_str(),
        "spiffe://shop/payment-service"
    );
    let mut foreign =
        MtlsConnector::new(&client, ExpectedIdentity::TrustDomain(td("other"))).unwrap();
    let err = foreign.call(uri).await.unwrap_err();
    assert!(matches!(
        err.svid_error(),
        Some(SvidError::UnexpectedIdentity { .. })
    ));
}

#[tokio::test]
async fn client_refuses_a_server_from_an_untrusted_ca() {
    let ca = DevCa::new(td("shop")).unwrap();
    let rogue = DevCa::new(td("shop")).unwrap();
    let addr = serve_strict(&workload(&rogue, "payment-service")).await;
    let client = workload(&ca, "order-service");
    let mut connector =
        MtlsConnector::new(&client, "spiffe://shop/payment-service".parse().unwrap()).unwrap();
    let err = connector
        .call(format!("http://{addr}/").parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
}

async fn plain_get(addr: SocketAddr) -> Result<String, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    http1_get(TokioIo::new(tcp)).await
}

#[tokio::test]
async fn permissive_mode_serves_plaintext_and_mtls_on_one_port() {
    let ca = DevCa::new(td("shop")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = MtlsListener::builder(&workload(&ca, "payment-service"))
        .mode(Mode::Permissive)
        .build(tcp)
        .unwrap();
    assert_eq!(listener.mode(), Mode::Permissive);
    let addr = serve(listener).await;

    assert_eq!(plain_get(addr).await.unwrap(), "anonymous");
    let (body, _) = msp_get(
        &workload(&ca, "order-service"),
        "spiffe://shop/payment-service",
        addr,
    )
    .await
    .unwrap();
    assert_eq!(body, "spiffe://shop/order-service");
    // TLS on a permissive port is still mutual.
    assert!(raw_get(addr, None).await.is_err());
    assert_eq!(plain_get(addr).await.unwrap(), "anonymous");
}

#[tokio::test]
async fn alpn_negotiates_h2_when_the_client_offers_it() {
    let ca = DevCa::new(td("shop")).unwrap();
    let addr = serve_strict(&workload(&ca, "payment-service")).await;
    let client = workload(&ca, "order-service");
    let uri: http::Uri = format!("http://{addr}/whoami").parse().unwrap();

    let h2 = MtlsConnector::builder(&client, "spiffe://shop/payment-service".parse().unwrap())
        .http2(true)
        .build()
        .unwrap();
    let res = Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(h2)
        .get(uri.clone())
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "spiffe://shop/order-service");

    let h1 = MtlsConnector::new(&client, "spiffe://shop/payment-service".parse().unwrap()).unwrap();
    let res = Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(h1)
        .get(uri)
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_11);
}

#[tokio::test]
async fn a_stalled_handshake_times_out_without_blocking_other_clients() {
    let ca = DevCa::new(td("shop")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = MtlsListener::builder(&workload(&ca, "payment-service"))
        .handshake_timeout(Duration::from_millis(200))
        .build(tcp)
        .unwrap();
    let addr = serve(listener).await;

    // Connects and says nothing.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    // Others are served meanwhile.
    let good = ca.issue("order-service").unwrap();
    assert_eq!(
        raw_get(addr, Some(&good)).await.unwrap(),
        "spiffe://shop/order-service"
    );
    // The stalled one is closed once its handshake time is up.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf))
        .await
        .expect("the server closes a stalled handshake")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn rotation_presents_the_new_certificate_while_open_connections_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new(td("shop")).unwrap();
    ca.write(dir.path()).unwrap();
    let first = ca.issue("payment-service").unwrap();
    first.write(dir.path()).unwrap();
    let server =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "payment-service")).unwrap();
    let addr = serve_strict(&server).await;

    let client = workload(&ca, "order-service");
    let mut connector =
        MtlsConnector::new(&client, "spiffe://shop/payment-service".parse().unwrap()).unwrap();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();

    // An open connection on the first certificate.
    let stream = connector.call(uri.clone()).await.unwrap();
    assert_eq!(stream.peer_certificate(), first.cert_der());
    let (mut open, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(stream)
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("/whoami")
            .header("host", "payment-service")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert!(
        open.send_request(get())
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // Renewed on disk: nothing changes until the reload.
    let second = ca.issue("payment-service").unwrap();
    second.write(dir.path()).unwrap();
    assert_eq!(
        connector
            .call(uri.clone())
            .await
            .unwrap()
            .peer_certificate(),
        first.cert_der()
    );
    assert!(matches!(
        server.reload_now().unwrap(),
        Reload::Rotated { .. }
    ));
    assert_eq!(server.reload_now().unwrap(), Reload::Unchanged);

    // The next handshake presents the new certificate...
    assert_eq!(
        connector
            .call(uri.clone())
            .await
            .unwrap()
            .peer_certificate(),
        second.cert_der()
    );
    // ...and the open connection keeps serving.
    let res = open.send_request(get()).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "spiffe://shop/order-service");

    // A bad new file keeps the last good credentials.
    std::fs::write(dir.path().join("payment-service.pem"), "garbage").unwrap();
    assert!(server.reload_now().is_err());
    let mismatched = ca.issue("payment-service").unwrap();
    std::fs::write(
        dir.path().join("payment-service.pem"),
        mismatched.cert_pem(),
    )
    .unwrap();
    let err = server.reload_now().unwrap_err();
    assert!(matches!(err, TlsError::Credentials { .. }), "{err}");
    assert_eq!(
        connector.call(uri).await.unwrap().peer_certificate(),
        second.cert_der()
    );
}

#[tokio::test(start_paused = true)]
async fn the_watcher_rotates_on_its_interval_and_skips_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new(td("shop")).unwrap();
    ca.write(dir.path()).unwrap();
    let first = ca.issue("payment-service").unwrap();
    first.write(dir.path()).unwrap();
    let identity =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "payment-service")).unwrap();
    let _watcher = identity.watch(Duration::from_secs(10));
    let not_after = |id: &WorkloadIdentity| id.svid().not_after;
    let initial = not_after(&identity);

    // A bad file is ignored.
    std::fs::write(dir.path().join("payment-service.pem"), "garbage").unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(not_after(&identity), initial);

    // A good one with another validity is picked up within a few ticks.
    let now = SystemTime::now();
    let renewed = ca
        .issue_with(CertOptions::workload("payment-service").validity(now - DAY, now + 7 * DAY))
        .unwrap();
    renewed.write(dir.path()).unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if not_after(&identity) != initial {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the watcher never picked up the renewed files");
    assert_eq!(
        identity.spiffe_id().as_str(),
        "spiffe://shop/payment-service"
    );
}

#[test]
fn loading_sets_the_expiry_gauge_labelled_by_spiffe_id() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let ca = DevCa::new(td("shop")).unwrap();
    let now = SystemTime::now();
    let cert = ca
        .issue_with(CertOptions::workload("order-service").validity(now - DAY, now + 2 * DAY))
        .unwrap();
    metrics::with_local_recorder(&recorder, || identity(&ca, &cert));
    let gauges: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(v) => Some((
                key.key()
                    .labels()
                    .find(|l| l.key() == "spiffe_id")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default(),
                v.into_inner(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(gauges.len(), 1, "{gauges:?}");
    assert_eq!(gauges[0].0, "spiffe://shop/order-service");
    let secs = gauges[0].1;
    assert!(
        secs > DAY.as_secs_f64() && secs <= 2.0 * DAY.as_secs_f64(),
        "{secs}"
    );
}

#[test]
fn dev_ca_reuses_valid_files_and_replaces_invalid_ones() {
    use msp_core::tls::dev::{Issued, ensure_dir};
    let dir = tempfile::tempdir().unwrap();
    let shop = td("shop");
    let first = ensure_dir(dir.path(), &shop, &["order-service", "payment-service"]).unwrap();
    assert!(first.iter().all(|(_, i)| *i == Issued::New));
    let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();

    let again = ensure_dir(dir.path(), &shop, &["order-service", "payment-service"]).unwrap();
    assert!(again.iter().all(|(_, i)| *i == Issued::Reused), "{again:?}");
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_pem);

    // A broken certificate is reissued; the other one is kept.
    std::fs::write(dir.path().join("order-service.pem"), "garbage").unwrap();
    let fixed = ensure_dir(dir.path(), &shop, &["order-service", "payment-service"]).unwrap();
    assert_eq!(
        fixed,
        vec![
            ("order-service".to_owned(), Issued::New),
            ("payment-service".to_owned(), Issued::Reused)
        ]
    );
    let id =
        WorkloadIdentity::from_files(IdentityFiles::in_dir(dir.path(), "order-service")).unwrap();
    assert_eq!(id.spiffe_id().as_str(), "spiffe://shop/order-service");

    // Another trust domain gets a new CA, so every service is reissued.
    let other = ensure_dir(dir.path(), &td("other"), &["order-service"]).unwrap();
    assert_eq!(other[0].1, Issued::New);
    assert_ne!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_pem);
}

#[tokio::test]
async fn hyper_serves_accepted_streams_with_the_peer_identity() {
    use hyper_util::service::TowerToHyperService;
    use msp_core::tls::PeerIdentityService;

    let ca = DevCa::new(td("shop")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut listener = MtlsListener::builder(&workload(&ca, "payment-service"))
        .http1_only()
        .build(tcp)
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, info) = listener.accept().await;
            assert_eq!(stream.alpn_protocol(), Some(&b"http/1.1"[..]));
            assert!(stream.is_tls());
            assert_eq!(stream.peer_identity(), info.peer_identity());
            let service = TowerToHyperService::new(PeerIdentityService::new(app(), info));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let (body, _) = msp_get(
        &workload(&ca, "order-service"),
        "spiffe://shop/payment-service",
        addr,
    )
    .await
    .unwrap();
    assert_eq!(body, "spiffe://shop/order-service");
}
