//! Route match cost at 10, 1,000 and 10,000 routes: `RouteTable::find` for a
//! request whose route sits in the middle of the table (path normalisation,
//! host tiers, predicate groups, the radix lookup and parameter capture).
//!
//! ```text
//! cargo bench -p msp-gateway --bench route_match
//! ```

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use msp_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig};
use msp_gateway::route::{RouteMatch, RouteTable};
use std::hint::black_box;

/// `n` routes: half `/api/s{i}/*` wildcards, half `/api/s{i}/items/{id}`
/// with methods, as a gateway in front of many services has.
fn table(n: usize) -> RouteTable {
    let mut b = GatewayConfig::builder().service(
        "svc",
        ServiceConfig::new(["127.0.0.1:9000".parse().expect("addr")]),
    );
    for i in 0..n {
        let route = if i % 2 == 0 {
            RouteConfig::new(format!("/api/s{}/*", i / 2)).service("svc")
        } else {
            RouteConfig::new(format!("/api/s{}/items/{{id}}", i / 2))
                .service("svc")
                .methods([Method::GET, Method::PUT])
        };
        b = b.route(route);
    }
    RouteTable::new(&b.build().expect("valid")).expect("table")
}

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    let headers = HeaderMap::new();
    for n in [10usize, 1_000, 10_000] {
        let t = table(n);
        let mid = n / 4;
        let param_path = format!("/api/s{mid}/items/42");
        let wildcard_path = format!("/api/s{mid}/orders/7/lines");
        group.bench_with_input(BenchmarkId::new("param", n), &param_path, |b, path| {
            b.iter(|| {
                let m = t.find(
                    &Method::GET,
                    Some("gw.example.com"),
                    black_box(path),
                    None,
                    &headers,
                );
                assert!(matches!(m, RouteMatch::Found(_)));
                black_box(m);
            })
        });
        group.bench_with_input(
            BenchmarkId::new("wildcard", n),
            &wildcard_path,
            |b, path| {
                b.iter(|| {
                    let m = t.find(
                        &Method::GET,
                        Some("gw.example.com"),
                        black_box(path),
                        None,
                        &headers,
                    );
                    assert!(matches!(m, RouteMatch::Found(_)));
                    black_box(m);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("not_found", n),
            "/nothing/here",
            |b, path| {
                b.iter(|| {
                    let m = t.find(&Method::GET, None, black_box(path), None, &headers);
                    black_box(m);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, route_match);
criterion_main!(benches);
