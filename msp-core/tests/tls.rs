//! mTLS over real loopback connections: what a strict or permissive
//! listener accepts and refuses and what the client accepts.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod tls_support;

use self::tls_support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use msp_core::tls::dev::{CertOptions, DevCa};
use msp_core::tls::{
    ExpectedIdentity, Mode, MtlsConnector, MtlsListener, SvidError, TlsError, WorkloadIdentity,
    svid_of,
};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

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
    // A domain's CA vouches for its own workloads only: other's CA cannot
    // mint a shop identity, though both domains are accepted.
    let minted = other
        .issue_with(CertOptions::workload("order-service").uris(["spiffe://shop/order-service"]))
        .unwrap();
    assert!(raw_get(both, Some(&minted)).await.is_err());
    assert_eq!(
        raw_get(both, Some(&shop.issue("order-service").unwrap()))
            .await
            .unwrap(),
        "spiffe://shop/order-service"
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
        Err(SvidError::NotAWorkload(_))
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

#[tokio::test]
async fn client_refuses_an_expired_server_certificate() {
    let ca = DevCa::new(td("shop")).unwrap();
    let now = SystemTime::now();
    let expired = ca
        .issue_with(CertOptions::workload("payment-service").validity(now - 2 * DAY, now - DAY))
        .unwrap();
    // A server can still load it (and warns); clients must refuse it.
    let addr = serve_strict(&identity(&ca, &expired)).await;
    let mut connector = MtlsConnector::new(
        &workload(&ca, "order-service"),
        "spiffe://shop/payment-service".parse().unwrap(),
    )
    .unwrap();
    let err = connector
        .call(format!("https://{addr}/").parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");

    let fresh = ca.issue("payment-service").unwrap();
    let addr = serve_strict(&identity(&ca, &fresh)).await;
    let stream = connector
        .call(format!("https://{addr}/").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(stream.peer_certificate(), fresh.cert_der());
}

#[tokio::test]
async fn connect_info_exposes_the_peer_identity_to_axum_handlers() {
    use axum::extract::ConnectInfo;
    use msp_core::tls::TlsConnectInfo;

    let ca = DevCa::new(td("shop")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = MtlsListener::new(tcp, &workload(&ca, "payment-service")).unwrap();
    let app = axum::Router::new().route(
        "/whoami",
        axum::routing::get(
            |ConnectInfo(info): ConnectInfo<TlsConnectInfo>| async move {
                let peer = info.peer_identity().map(|p| p.to_string());
                format!(
                    "{} from {}",
                    peer.unwrap_or_default(),
                    info.remote_addr().ip()
                )
            },
        ),
    );
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<TlsConnectInfo>(),
        )
        .await
    });
    let (body, _) = msp_get(
        &workload(&ca, "order-service"),
        "spiffe://shop/payment-service",
        addr,
    )
    .await
    .unwrap();
    assert_eq!(body, "spiffe://shop/order-service from 127.0.0.1");
}
