//! Rate limits hold exactly, whichever connection a request comes on.

mod common_gw;

use bytes::Bytes;
use common_gw::{BOUND, backend, gateway};
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// One request on its own new connection.
async fn on_new_connection(addr: SocketAddr, path: &'static str) -> StatusCode {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "gateway.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    sender.send_request(req).await.expect("answer").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_limit_is_exact_across_100_connections() {
    let orders = backend("order-service").await;
    let yaml = format!(
        r#"
routes:
  - path: "/api/orders/*"
    service: order-service
    rate_limit: 25/hour
services:
  order-service:
    instances: ["{}"]
"#,
        orders.addr
    );
    let (_gw, addr) = gateway(&yaml).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        tasks.spawn(on_new_connection(addr, "/api/orders/1"));
    }
    let mut ok = 0;
    let mut limited = 0;
    while let Some(status) = tokio::time::timeout(BOUND, tasks.join_next())
        .await
        .expect("all answer in time")
    {
        match status.expect("task") {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (25, 75));
    assert_eq!(orders.hits(), 25);
}

#[tokio::test]
async fn a_per_ip_limit_counts_clients_apart_through_trusted_proxies() {
    let orders = backend("order-service").await;
    let yaml = format!(
        r#"
trusted_proxies: ["127.0.0.0/8"]
routes:
  - path: "/api/orders/*"
    service: order-service
    rate_limit: 2/hour
    rate_limit_by: ip
services:
  order-service:
    instances: ["{}"]
"#,
        orders.addr
    );
    let (_gw, addr) = gateway(&yaml).await;
    let http = common_gw::Http::new(addr);
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        let res = http
            .send(http::Method::GET, "/api/orders/1", &from("203.0.113.1"))
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let res = http
        .send(http::Method::GET, "/api/orders/1", &from("203.0.113.1"))
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy has its own quota.
    let res = http
        .send(http::Method::GET, "/api/orders/1", &from("203.0.113.2"))
        .await;
    assert_eq!(res.status, StatusCode::OK);
}
