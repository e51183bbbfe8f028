//! Authorization policies behind msp's mTLS listener: the peer identity
//! and address the listener proves are what the policies see.
#![cfg(feature = "tls")]

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_core::authz::{AuthorizationLayer, AuthorizationPolicies, PolicyHandle};
use msp_core::tls::dev::DevCa;
use msp_core::tls::{Mode, MtlsConnector, MtlsListener, WorkloadIdentity, with_peer_identity};
use std::net::SocketAddr;

fn policies(json: &str) -> AuthorizationPolicies {
    serde_json::from_str(json).expect("valid policies")
}

/// `POST /payments` in plaintext, with no identity.
async fn plaintext_pay(addr: SocketAddr) -> StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::post(format!("http://{addr}/payments"))
        .body(Empty::new())
        .expect("request");
    client.request(req).await.expect("response").status()
}

/// The whole path: msp's mTLS listener (permissive: mTLS and plaintext on
/// one port) verifies the client certificate and puts the `PeerIdentity`
/// and the peer address into the request; the policies decide on them.
#[tokio::test]
async fn over_mtls_order_service_may_pay_user_service_and_plaintext_get_403() {
    let ca = DevCa::new("shop".parse().expect("trust domain")).expect("dev CA");
    let identity = |service: &str| {
        let cert = ca.issue(service).expect("issued");
        WorkloadIdentity::from_pem(
            cert.cert_pem().as_bytes(),
            cert.key_pem().as_bytes(),
            ca.cert_pem().as_bytes(),
        )
        .expect("identity")
    };

    // order-service may pay, from loopback only (the address comes from
    // the ConnectInfo the listener's with_peer_identity inserts).
    let handle = PolicyHandle::new(policies(
        r#"{"policies": [{"name": "payments", "action": "ALLOW", "rules": [{
            "from": [{"principals": ["spiffe://shop/order-service"], "ip_blocks": ["127.0.0.0/8"]}],
            "to": [{"methods": ["POST"], "paths": ["/payments"]}]
        }]}]}"#,
    ));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("local addr");
    let listener = MtlsListener::builder(&identity("payment-service"))
        .mode(Mode::Permissive)
        .build(tcp)
        .expect("listener");
    let app = Router::new()
        .route("/payments", post(|| async { "paid" }))
        .layer(AuthorizationLayer::new(handle.clone()));
    tokio::spawn(async move { axum::serve(listener, with_peer_identity(app)).await });

    let mtls_client = |service: &str| {
        let connector = MtlsConnector::new(
            &identity(service),
            "spiffe://shop/payment-service".parse().expect("SPIFFE ID"),
        )
        .expect("connector");
        Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector)
    };
    let pay = |client: Client<_, Empty<Bytes>>| async move {
        let req = Request::post(format!("http://{addr}/payments"))
            .body(Empty::new())
            .expect("request");
        let res = client.request(req).await.expect("response");
        let status = res.status();
        let content_type = res.headers().get("content-type").cloned();
        (status, content_type)
    };

    let (status, _) = pay(mtls_client("order-service")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, content_type) = pay(mtls_client("user-service")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        content_type.as_ref().map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    // Plaintext on the permissive port: no identity, so not order-service.
    assert_eq!(plaintext_pay(addr).await, StatusCode::FORBIDDEN);

    // The same port, new policies: user-service now pays too.
    handle.store(policies(
        r#"{"policies": [{"name": "payments", "action": "ALLOW", "rules": [{
            "from": [{"trust_domains": ["shop"]}],
            "to": [{"methods": ["POST"], "paths": ["/payments"]}]
        }]}]}"#,
    ));
    assert_eq!(pay(mtls_client("user-service")).await.0, StatusCode::OK);
    assert_eq!(plaintext_pay(addr).await, StatusCode::FORBIDDEN);
}
