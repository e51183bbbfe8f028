//! The header pass of one proxied exchange: `validate_request`,
//! `prepare_request` (hop-by-hop out, `Via`/`X-Forwarded-*`/`Forwarded` in,
//! `Host`, URI) and `prepare_response`, for a browser-like request of 12
//! fields, from an untrusted client and through a trusted proxy.
//!
//! ```text
//! cargo bench -p msp-gateway --bench header_pass
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use msp_gateway::proxy::{ForwardContext, Limits, TrustedProxies, headers, validate_request};
use std::hint::black_box;

fn request() -> Request<()> {
    Request::get("/api/users/42/orders?page=2")
        .header("host", "api.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("accept-language", "en-GB,en;q=0.5")
        .header("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        .header("cookie", "session=0123456789abcdef; theme=dark")
        .header("connection", "keep-alive")
        .header("x-request-id", "7f3c2a9e-5b1d-4c8e-9a6f-2d4b8c1e0f7a")
        .header("x-forwarded-for", "203.0.113.7")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("te", "trailers")
        .body(())
        .expect("request")
}

fn response() -> Response<()> {
    Response::builder()
        .header("content-type", "application/json")
        .header("content-length", "1024")
        .header("cache-control", "no-store")
        .header("set-cookie", "a=1; Path=/")
        .header("set-cookie", "b=2; HttpOnly")
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .body(())
        .expect("response")
}

fn header_pass(c: &mut Criterion) {
    let mut group = c.benchmark_group("header_pass");
    let limits = Limits::default();
    let upstream: Uri = "http://10.0.0.1:8080/users/42/orders?page=2"
        .parse()
        .expect("uri");
    let untrusted = ForwardContext::new("198.51.100.1:50000".parse().expect("addr"));
    let trusted = untrusted
        .clone()
        .with_trusted(TrustedProxies::new(["198.51.100.0/24"
            .parse()
            .expect("cidr")]));
    // What building and dropping the two messages costs by itself.
    group.bench_function("baseline_no_pass", |b| {
        b.iter_batched(
            || (request(), response()),
            black_box,
            criterion::BatchSize::SmallInput,
        );
    });
    for (name, ctx) in [("untrusted_peer", &untrusted), ("trusted_proxy", &trusted)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || (request(), response()),
                |(mut req, mut res)| {
                    validate_request(&req, &limits).expect("valid");
                    headers::prepare_request(&mut req, upstream.clone(), ctx).expect("prepared");
                    headers::prepare_response(&mut res, ctx);
                    black_box((req, res))
                },
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.bench_function("parts/validate", |b| {
        b.iter_batched(
            request,
            |req| {
                validate_request(&req, &limits).expect("valid");
                black_box(req)
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("parts/prepare_request", |b| {
        b.iter_batched(
            request,
            |mut req| {
                headers::prepare_request(&mut req, upstream.clone(), &untrusted).expect("prepared");
                black_box(req)
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("parts/prepare_response", |b| {
        b.iter_batched(
            response,
            |mut res| {
                headers::prepare_response(&mut res, &untrusted);
                black_box(res)
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, header_pass);
criterion_main!(benches);
