//! DiscoveryClient overhead against a plain hyper-util client, both to one
//! loopback axum server in the same run.
//!
//! `cargo bench -p msp-discovery --bench client -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_core::Instance;
use msp_discovery::balance::{BalanceConfig, Strategy};
use msp_discovery::client::DiscoveryClient;
use msp_discovery::registry::MemoryRegistry;
use tower::{Service, ServiceExt};

fn bench_client(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    });

    let plain: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let plain_uri: http::Uri = format!("http://{addr}/").parse().expect("uri");

    let registry = MemoryRegistry::new();
    registry
        .insert(Instance::parse("bench", &addr.to_string()).expect("instance"))
        .expect("insert");
    let discovery = DiscoveryClient::builder(registry)
        .balance(
            BalanceConfig::builder()
                .strategy(Strategy::p2c())
                .build()
                .expect("valid config"),
        )
        .build::<Empty<Bytes>>();
    rt.block_on(async {
        discovery
            .resolve(&"bench".parse().expect("name"))
            .await
            .expect("resolved")
    });

    let mut group = c.benchmark_group("client_get");
    group.bench_function("hyper_util_direct", |b| {
        b.to_async(&rt).iter(|| {
            let plain = plain.clone();
            let uri = plain_uri.clone();
            async move {
                let req = http::Request::get(uri).body(Empty::new()).expect("request");
                let res = plain.request(req).await.expect("response");
                res.into_body().collect().await.expect("body")
            }
        })
    });
    group.bench_function("discovery_client", |b| {
        b.to_async(&rt).iter(|| {
            let mut client = discovery.clone();
            async move {
                let req = http::Request::get("http://bench/")
                    .body(Empty::new())
                    .expect("request");
                let res = client
                    .ready()
                    .await
                    .expect("ready")
                    .call(req)
                    .await
                    .expect("response");
                res.into_body().collect().await.expect("body")
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_client);
criterion_main!(benches);
