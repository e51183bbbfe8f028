//! The BFF's aggregation:
//!
//! - `bff_fanout`: three loopback backends answering after 5, 10 and
//!   20 ms, called through one aggregate (concurrently: ≈ the slowest)
//!   against the same three calls made one after another by the client
//!   (≈ the sum);
//! - `bff_overhead`: the aggregation layer's own cost per request — three
//!   instant in-process backends (no network) through an aggregate, with
//!   and without per-client shaping, against the three calls made by hand;
//!   then the same merged page encoded for IoT clients as CBOR, MessagePack
//!   and protobuf (`bench.v1.UserPage` of tests/data/user_page.proto).
//!
//! ```text
//! cargo bench -p msp-gateway --bench bff
//! ```

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use msp_gateway::Body;
use msp_gateway::bff::{
    Aggregate, BackendConfig, ClientProfile, Format, ProtobufSchema, ThumbnailRule,
};
use msp_gateway::proxy::ProxyClient;
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;
use tower::ServiceExt;

const USER: &str = r#"{"id":7,"name":"Ada","email":"ada@example.com","image":"https://cdn/images/a.png","tags":["a","b"]}"#;
const ORDERS: &str = r#"[{"id":1,"total":10,"items":[1,2,3]},{"id":2,"total":20,"items":[4]}]"#;
const REVIEWS: &str = r#"{"stars":[5,4,5],"count":3,"last":{"by":"Bob","text":"fine"}}"#;

fn json(body: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::full(body));
    res.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    res
}

async fn delayed_backends() -> SocketAddr {
    let app = Router::new()
        .route(
            "/user",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                USER
            }),
        )
        .route(
            "/orders",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ORDERS
            }),
        )
        .route(
            "/reviews",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                REVIEWS
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn aggregate(base: &str) -> Aggregate {
    Aggregate::builder("bench")
        .path("/users/{id}")
        .backend(BackendConfig::new("user", format!("{base}/user")).required())
        .backend(BackendConfig::new("orders", format!("{base}/orders")).group("orders"))
        .backend(BackendConfig::new("reviews", format!("{base}/reviews")).group("reviews"))
        .client(ProxyClient::new())
        .build()
        .expect("aggregate")
}

fn request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

fn accepting(accept: &'static str) -> Request<Body> {
    let mut req = request("/users/7");
    req.headers_mut()
        .insert("accept", http::HeaderValue::from_static(accept));
    req
}

async fn read(res: Response<Body>) -> bytes::Bytes {
    res.into_body().collect().await.expect("body").to_bytes()
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = rt.block_on(delayed_backends());
    let base = format!("http://{addr}");
    let agg = aggregate(&base);
    let client = ProxyClient::new();
    let mut group = c.benchmark_group("bff_fanout");
    group.sample_size(30);
    group.bench_function("aggregate_5_10_20ms", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = agg
                    .clone()
                    .oneshot(request("/users/7"))
                    .await
                    .expect("infallible");
                assert_eq!(res.status(), 200);
                black_box(read(res).await)
            })
        })
    });
    group.bench_function("sequential_5_10_20ms", |b| {
        b.iter(|| {
            rt.block_on(async {
                for path in ["/user", "/orders", "/reviews"] {
                    let res = client
                        .clone()
                        .oneshot(request(&format!("{base}{path}")))
                        .await
                        .expect("response");
                    black_box(res.into_body().collect().await.expect("body").to_bytes());
                }
            })
        })
    });
    group.finish();
}

fn instant(path: &'static str) -> Response<Body> {
    match path {
        "/user" => json(USER),
        "/orders" => json(ORDERS),
        _ => json(REVIEWS),
    }
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // In-process backends: the cost measured is the aggregation's own.
    let backend = tower::service_fn(|req: Request<Body>| async move {
        let path = match req.uri().path() {
            "/user" => "/user",
            "/orders" => "/orders",
            _ => "/reviews",
        };
        Ok::<_, Infallible>(instant(path))
    });
    let build = |shaped: bool, protobuf: bool| {
        let mut b = Aggregate::builder("bench")
            .path("/users/{id}")
            .backend(
                BackendConfig::new("user", "http://users/user")
                    .required()
                    .deny(["tags"]),
            )
            .backend(BackendConfig::new("orders", "http://orders/orders").group("orders"))
            .backend(BackendConfig::new("reviews", "http://reviews/reviews").group("reviews"))
            .client(backend);
        if protobuf {
            let descriptor_set = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/user_page.binpb");
            b = b.profile(
                "iot",
                ClientProfile::new()
                    .format(Format::Protobuf)
                    .protobuf(ProtobufSchema::new(descriptor_set, "bench.v1.UserPage")),
            );
        }
        if shaped {
            b = b.profile(
                "mobile",
                ClientProfile::new()
                    .deny(["reviews.last"])
                    .omit_nulls()
                    .thumbnail(ThumbnailRule::new(["image"], "/images/", "/thumb/")),
            );
        }
        b.build().expect("aggregate")
    };
    let plain = build(false, false);
    let shaped = build(true, false);
    // The IoT encodings on one aggregate: the same merged page each time.
    let binary = build(false, true);
    let mut group = c.benchmark_group("bff_overhead");
    group.bench_function("three_calls_by_hand", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (a, o, r) = tokio::join!(
                    backend.oneshot(request("http://users/user")),
                    backend.oneshot(request("http://orders/orders")),
                    backend.oneshot(request("http://reviews/reviews")),
                );
                for res in [a, o, r] {
                    black_box(read(res.expect("infallible")).await);
                }
            })
        })
    });
    group.bench_function("aggregate_web_json", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = plain
                    .clone()
                    .oneshot(request("/users/7"))
                    .await
                    .expect("infallible");
                black_box(read(res).await)
            })
        })
    });
    group.bench_function("aggregate_mobile_shaped", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut req = request("/users/7?fields=name,image,orders");
                req.headers_mut()
                    .insert("x-client-type", http::HeaderValue::from_static("mobile"));
                let res = shaped.clone().oneshot(req).await.expect("infallible");
                black_box(read(res).await)
            })
        })
    });
    for (name, accept) in [
        ("aggregate_iot_cbor", "application/cbor"),
        ("aggregate_iot_msgpack", "application/msgpack"),
        ("aggregate_iot_protobuf", "application/protobuf"),
    ] {
        // Checked once: the format asked for is the one sent.
        let res = rt
            .block_on(binary.clone().oneshot(accepting(accept)))
            .expect("infallible");
        assert_eq!(res.status(), 200, "{name}");
        let sent = res.headers()["content-type"].to_str().expect("ascii");
        assert!(sent.starts_with(accept), "{name}: {sent}");
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let res = binary
                        .clone()
                        .oneshot(accepting(accept))
                        .await
                        .expect("infallible");
                    black_box(read(res).await)
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout, overhead);
criterion_main!(benches);
