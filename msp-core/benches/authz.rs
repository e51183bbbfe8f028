//! Per-request cost of `AuthorizationLayer` against the bare service it
//! wraps, with 10 and 100 ALLOW rules. The request carries a
//! `PeerIdentity` and a peer address and matches the **last** rule (every
//! rule is evaluated), or none (denied: the 403 problem+json is built).
//! A metrics recorder is installed, so counting the decision is a real
//! atomic add.
//!
//! ```sh
//! cargo bench -p msp-core --features tls --bench authz -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use metrics_util::debugging::DebuggingRecorder;
use msp_core::authz::{AuthorizationLayer, AuthorizationPolicies, Operation, Policy, Rule, Source};
use msp_core::identity::{PeerIdentity, SpiffeId};
use tower::{Layer, Service, service_fn};

/// `rules` ALLOW rules in policies of 10: rule `i` lets
/// `spiffe://shop/service-{i}` POST under `/api/{i}/`, from the LAN.
fn policies(rules: usize) -> AuthorizationPolicies {
    let mut builder = AuthorizationPolicies::builder();
    for p in 0..rules.div_ceil(10) {
        let mut policy = Policy::allow(format!("policy-{p}"));
        for i in p * 10..(p * 10 + 10).min(rules) {
            policy = policy.rule(
                Rule::new()
                    .name(format!("rule-{i}"))
                    .from(
                        Source::new()
                            .principals([format!("spiffe://shop/service-{i}")])
                            .ip_blocks(["10.0.0.0/8"]),
                    )
                    .to(Operation::new()
                        .methods(["POST"])
                        .paths([format!("/api/{i}/*")])),
            );
        }
        builder = builder.policy(policy);
    }
    builder.build().unwrap_or_else(|e| panic!("{e}"))
}

fn request(peer: &PeerIdentity, path: &str) -> Request<()> {
    let mut req = Request::post(path)
        .header("host", "payments.shop.example:8443")
        .header("content-type", "application/json")
        .body(())
        .unwrap_or_else(|e| panic!("{e}"));
    req.extensions_mut().insert(peer.clone());
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 1, 2, 3], 40000)));
    req
}

fn bench(c: &mut Criterion) {
    let _ = DebuggingRecorder::new().install();
    let bare = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });

    let mut g = c.benchmark_group("authz_per_request");
    g.bench_function("bare service", |b| {
        let mut svc = bare;
        let peer = PeerIdentity::new(id("spiffe://shop/service-9"));
        b.iter(|| {
            let res = svc.call(request(&peer, "/api/9/charge")).now_or_never();
            black_box(res)
        })
    });
    for rules in [10, 100] {
        let mut svc = AuthorizationLayer::new(policies(rules)).layer(bare);
        let last = rules - 1;
        let peer = PeerIdentity::new(id(&format!("spiffe://shop/service-{last}")));
        let path = format!("/api/{last}/charge");
        let res = svc.call(request(&peer, &path)).now_or_never();
        assert!(matches!(&res, Some(Ok(r)) if r.status() == 200));
        let stranger = PeerIdentity::new(id("spiffe://shop/stranger"));
        let res = svc.call(request(&stranger, &path)).now_or_never();
        assert!(matches!(&res, Some(Ok(r)) if r.status() == 403));

        g.bench_function(format!("{rules} rules, last one allows"), |b| {
            b.iter(|| {
                let res = svc.call(request(&peer, &path)).now_or_never();
                black_box(res)
            })
        });
        g.bench_function(format!("{rules} rules, none matches (403)"), |b| {
            b.iter(|| {
                let res = svc.call(request(&stranger, &path)).now_or_never();
                black_box(res)
            })
        });
    }
    g.finish();
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

criterion_group!(benches, bench);
criterion_main!(benches);
