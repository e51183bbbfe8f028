//! The cost of msp's mTLS against plain HTTP through the same axum app on
//! loopback: a new connection with one request (the handshake: TCP, TLS
//! 1.3 with a client certificate, both X509-SVID checks) and a request on
//! an open keep-alive connection (the per-request overhead: record
//! encryption). P-256 certificates from the development CA.
//!
//! ```sh
//! cargo bench -p msp-core --features tls --bench mtls -- --warm-up-time 1 --measurement-time 3
//! ```

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use msp_core::tls::dev::DevCa;
use msp_core::tls::{MtlsConnector, MtlsListener, WorkloadIdentity, with_peer_identity};
use std::net::SocketAddr;
use tower::Service;

fn identity(ca: &DevCa, service: &str) -> WorkloadIdentity {
    let cert = ca.issue(service).expect("issue");
    WorkloadIdentity::from_pem(
        cert.cert_pem().as_bytes(),
        cert.key_pem().as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .expect("identity")
}

fn app() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("/")
        .header("host", "bench")
        .body(Empty::new())
        .expect("request")
}

async fn get(send: &mut SendRequest<Empty<Bytes>>) {
    send.ready().await.expect("connection ready");
    let res = send.send_request(request()).await.expect("response");
    assert!(res.status().is_success());
    res.into_body().collect().await.expect("body");
}

async fn plain_conn(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (send, conn) = http1::handshake(TokioIo::new(tcp)).await.expect("h1");
    tokio::spawn(conn);
    send
}

async fn mtls_conn(connector: &mut MtlsConnector, uri: &http::Uri) -> SendRequest<Empty<Bytes>> {
    let stream = connector.call(uri.clone()).await.expect("mtls connect");
    let (send, conn) = http1::handshake(stream).await.expect("h1");
    tokio::spawn(conn);
    send
}

fn bench_mtls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = DevCa::new("shop".parse().expect("trust domain")).expect("ca");
    let server = identity(&ca, "payment-service");
    let client = identity(&ca, "order-service");
    let (plain_addr, mtls_addr) = rt.block_on(async {
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let plain_addr = plain.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(plain, app()).await });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mtls_addr = tcp.local_addr().expect("addr");
        let listener = MtlsListener::new(tcp, &server).expect("listener");
        tokio::spawn(async move { axum::serve(listener, with_peer_identity(app())).await });
        (plain_addr, mtls_addr)
    });
    let mut connector = MtlsConnector::new(
        &client,
        "spiffe://shop/payment-service".parse().expect("id"),
    )
    .expect("connector");
    let mtls_uri: http::Uri = format!("http://{mtls_addr}/").parse().expect("uri");

    let mut group = c.benchmark_group("new_connection_and_get");
    group.bench_function("plain", |b| {
        b.iter(|| rt.block_on(async { get(&mut plain_conn(plain_addr).await).await }))
    });
    group.bench_function("mtls", |b| {
        b.iter(|| rt.block_on(async { get(&mut mtls_conn(&mut connector, &mtls_uri).await).await }))
    });
    group.finish();

    let mut group = c.benchmark_group("keepalive_get");
    let mut plain = rt.block_on(plain_conn(plain_addr));
    group.bench_function("plain", |b| b.iter(|| rt.block_on(get(&mut plain))));
    let mut mtls = rt.block_on(mtls_conn(&mut connector, &mtls_uri));
    group.bench_function("mtls", |b| b.iter(|| rt.block_on(get(&mut mtls))));
    group.finish();
}

criterion_group!(benches, bench_mtls);
criterion_main!(benches);
