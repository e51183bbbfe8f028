//! The gateway as an axum fallback service, served with
//! `into_make_service_with_connect_info::<SocketAddr>()`: the gateway
//! reads axum's `ConnectInfo` (feature `axum`), so per-IP limits key on
//! the real client address.
#![cfg(feature = "axum")]

mod common_gw;

use bytes::Bytes;
use common_gw::{BOUND, backend};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use msp_gateway::Gateway;
use msp_gateway::config::GatewayConfig;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One GET from a client socket bound to `from` (any 127.0.0.0/8 address
/// is loopback on Linux).
async fn get_from(from: IpAddr, addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind client");
    let stream = tokio::time::timeout(BOUND, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "gateway.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let res = tokio::time::timeout(BOUND, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn gateway_as_axum_fallback_limits_per_client_ip_from_connect_info() {
    let users = backend("user-service").await;
    let yaml = format!(
        r#"
routes:
  - path: "/api/users/*"
    service: user-service
    rate_limit: 2/hour
    rate_limit_by: ip
services:
  user-service: {{ instances: ["{}"] }}
"#,
        users.addr
    );
    let gateway = Gateway::from_config(GatewayConfig::from_yaml(&yaml, "test").expect("config"))
        .await
        .expect("gateway");
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "axum ok" }))
        .fallback_service(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    // axum's own route still answers; everything else goes to the gateway.
    assert_eq!(
        get_from(one, addr, "/health").await,
        (StatusCode::OK, "axum ok".into())
    );
    let (status, body) = get_from(one, addr, "/api/users/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "user-service GET /api/users/1");
    assert_eq!(get_from(one, addr, "/api/users/2").await.0, StatusCode::OK);
    // 127.0.0.1 has used its 2/hour; a third is refused.
    assert_eq!(
        get_from(one, addr, "/api/users/3").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client address has its own quota: the gateway keyed on the
    // ConnectInfo address, not one shared "unknown" client.
    assert_eq!(get_from(two, addr, "/api/users/4").await.0, StatusCode::OK);
    assert_eq!(get_from(two, addr, "/api/users/5").await.0, StatusCode::OK);
    assert_eq!(
        get_from(two, addr, "/api/users/6").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(users.hits(), 4);
}
