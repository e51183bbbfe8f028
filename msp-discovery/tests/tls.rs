//! The DiscoveryClient over mutual TLS: instances resolved from a
//! MemoryRegistry, each server identity verified as expected, and pooled
//! connections never shared across expected identities.

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use axum::{Extension, Router, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use msp_core::identity::PeerIdentity;
use msp_core::tls::dev::DevCa;
use msp_core::tls::{MtlsListener, WorkloadIdentity, with_peer_identity};
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::client::{DiscoveryClient, DiscoveryError, SPIFFE_ID_METADATA};
use msp_discovery::registry::MemoryRegistry;
use std::net::SocketAddr;
use tower::{Service, ServiceExt};

fn identity(ca: &DevCa, service: &str) -> WorkloadIdentity {
    let cert = ca.issue(service).unwrap();
    WorkloadIdentity::from_pem(
        cert.cert_pem().as_bytes(),
        cert.key_pem().as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .unwrap()
}

/// An mTLS server presenting `service`'s identity and answering with the
/// caller's.
async fn mtls_server(ca: &DevCa, service: &str) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = MtlsListener::new(tcp, &identity(ca, service)).unwrap();
    let app = Router::new().route(
        "/whoami",
        get(|Extension(peer): Extension<PeerIdentity>| async move { peer.to_string() }),
    );
    tokio::spawn(async move { axum::serve(listener, with_peer_identity(app)).await });
    addr
}

fn instance(service: &str, id: &str, addr: SocketAddr, spiffe_id: Option<&str>) -> Instance {
    let mut b = Instance::builder(ServiceName::new(service).unwrap(), addr)
        .id(InstanceId::new(id).unwrap());
    if let Some(s) = spiffe_id {
        b = b.metadata(SPIFFE_ID_METADATA, s);
    }
    b.build().unwrap()
}

async fn get_whoami(
    client: &mut DiscoveryClient<Empty<Bytes>>,
    service: &str,
) -> Result<String, DiscoveryError> {
    let req = http::Request::get(format!("http://{service}/whoami"))
        .body(Empty::new())
        .unwrap();
    let res = client.ready().await?.call(req).await?;
    assert!(res.status().is_success(), "{}", res.status());
    let body = res.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn discovery_client_calls_a_registered_service_over_mtls() {
    let ca = DevCa::new("shop".parse().unwrap()).unwrap();
    let addr = mtls_server(&ca, "payment-service").await;
    let registry = MemoryRegistry::new();
    registry
        .insert(instance("payment-service", "p1", addr, None))
        .unwrap();

    let mut client = DiscoveryClient::builder(registry)
        .tls(identity(&ca, "order-service"))
        .build::<Empty<Bytes>>();
    // The default expectation: spiffe://shop/payment-service.
    assert_eq!(
        get_whoami(&mut client, "payment-service").await.unwrap(),
        "spiffe://shop/order-service"
    );

    // A plaintext client cannot talk to it.
    let registry = MemoryRegistry::new();
    registry
        .insert(instance("payment-service", "p1", addr, None))
        .unwrap();
    let mut plain = DiscoveryClient::builder(registry).build::<Empty<Bytes>>();
    assert!(get_whoami(&mut plain, "payment-service").await.is_err());
}

#[tokio::test]
async fn a_registered_spiffe_id_of_another_workload_is_refused_by_default() {
    let ca = DevCa::new("shop".parse().unwrap()).unwrap();
    // An attacker's workload of the domain, and its registration as
    // "billing" claiming its own identity.
    let attacker = mtls_server(&ca, "inventory-service").await;
    let registry = MemoryRegistry::new();
    registry
        .insert(instance(
            "billing",
            "b1",
            attacker,
            Some("spiffe://shop/inventory-service"),
        ))
        .unwrap();
    let mut client = DiscoveryClient::builder(registry)
        .tls(identity(&ca, "order-service"))
        .build::<Empty<Bytes>>();
    // billing must prove spiffe://shop/billing; the claim changes nothing.
    for _ in 0..2 {
        let err = get_whoami(&mut client, "billing").await.unwrap_err();
        assert!(err.is_connect(), "{err}");
    }
}

#[tokio::test]
async fn the_expected_identity_comes_from_config_then_the_service_and_metadata_only_when_trusted() {
    let ca = DevCa::new("shop".parse().unwrap()).unwrap();
    let addr = mtls_server(&ca, "payment-service").await;
    let registry = MemoryRegistry::new();
    // Metadata naming another workload is ignored by default: the service
    // name decides.
    registry
        .insert(instance(
            "payment-service",
            "p1",
            addr,
            Some("spiffe://shop/inventory-service"),
        ))
        .unwrap();
    // "billing" served by payment-service, which its metadata says.
    registry
        .insert(instance(
            "billing",
            "b1",
            addr,
            Some("spiffe://shop/payment-service"),
        ))
        .unwrap();
    // A bare trust domain, and a value that is no SPIFFE ID.
    registry
        .insert(instance("payments-any", "a1", addr, Some("spiffe://shop")))
        .unwrap();
    registry
        .insert(instance("broken", "x1", addr, Some("payment-service")))
        .unwrap();

    let mut default = DiscoveryClient::builder(registry.clone())
        .tls(identity(&ca, "order-service"))
        .build::<Empty<Bytes>>();
    assert_eq!(
        get_whoami(&mut default, "payment-service").await.unwrap(),
        "spiffe://shop/order-service"
    );
    let err = get_whoami(&mut default, "billing").await.unwrap_err();
    assert!(err.is_connect(), "{err}");

    // Opted in, the metadata decides, but only when it names a workload.
    let mut trusting = DiscoveryClient::builder(registry.clone())
        .tls(identity(&ca, "order-service"))
        .trust_registry_identities(true)
        .build::<Empty<Bytes>>();
    assert_eq!(
        get_whoami(&mut trusting, "billing").await.unwrap(),
        "spiffe://shop/order-service"
    );
    for service in ["payments-any", "broken"] {
        let err = get_whoami(&mut trusting, service).await.unwrap_err();
        assert!(matches!(err, DiscoveryError::TlsConfig { .. }), "{err}");
        assert_eq!(err.status_code(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }

    // Configuration beats the metadata, trusted or not.
    let mut configured = DiscoveryClient::builder(registry.clone())
        .tls(identity(&ca, "order-service"))
        .expect_identity(
            "payments-any".parse().unwrap(),
            "spiffe://shop/payment-service".parse().unwrap(),
        )
        .expect_identity(
            "billing".parse().unwrap(),
            "spiffe://shop/inventory-service".parse().unwrap(),
        )
        .trust_registry_identities(true)
        .build::<Empty<Bytes>>();
    assert_eq!(
        get_whoami(&mut configured, "payments-any").await.unwrap(),
        "spiffe://shop/order-service"
    );
    let err = get_whoami(&mut configured, "billing").await.unwrap_err();
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn a_pooled_connection_is_never_reused_for_another_expected_identity() {
    let ca = DevCa::new("shop".parse().unwrap()).unwrap();
    let addr = mtls_server(&ca, "payment-service").await;
    let registry = MemoryRegistry::new();
    // Two services at the very same address, expecting different identities.
    registry
        .insert(instance("payment-service", "p1", addr, None))
        .unwrap();
    registry
        .insert(instance("refunds", "r1", addr, None))
        .unwrap();
    let mut client = DiscoveryClient::builder(registry)
        .tls(identity(&ca, "order-service"))
        .build::<Empty<Bytes>>();

    // A verified keep-alive connection to the address is now pooled...
    for _ in 0..3 {
        assert_eq!(
            get_whoami(&mut client, "payment-service").await.unwrap(),
            "spiffe://shop/order-service"
        );
    }
    // ...and still a request expecting spiffe://shop/refunds there is refused,
    // every time.
    for _ in 0..3 {
        let err = get_whoami(&mut client, "refunds").await.unwrap_err();
        assert!(err.is_connect(), "{err}");
    }
    assert!(get_whoami(&mut client, "payment-service").await.is_ok());
}
