//! Pick cost per strategy at 10, 1,000 and 10,000 instances, and the p2c
//! request cycle against tower's `p2c::Balance`.
//!
//! `cargo bench -p msp-discovery --bench balance -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use msp_core::Outcome;
use msp_core::{Instance, InstanceId, ServiceName};
use msp_discovery::balance::{
    BalanceConfig, Balancer, ConsistentHash, Endpoint, EndpointSet, P2c, Random, RoundRobin,
    Strategy, Weighted,
};
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower::{Service, service_fn};

fn instances(n: usize) -> Vec<Instance> {
    let svc = ServiceName::new("bench").expect("valid name");
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000u32 + i as u32);
            Instance::builder(svc.clone(), SocketAddr::from((ip, 8080)))
                .id(InstanceId::new(format!("i{i}")).expect("valid id"))
                .weight(1 + (i % 4) as u32)
                .build()
                .expect("valid instance")
        })
        .collect()
}

fn endpoints(n: usize) -> Vec<Endpoint> {
    instances(n)
        .into_iter()
        .map(|i| Endpoint::new(i, Duration::from_millis(1)))
        .collect()
}

fn bench_strategies(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n in [10usize, 1_000, 10_000] {
        let eps = endpoints(n);
        let keys: Vec<Vec<u8>> = (0..1024)
            .map(|i| format!("user-{i}").into_bytes())
            .collect();
        let strategies: Vec<(&str, Box<dyn Balancer>)> = vec![
            ("round_robin", Box::new(RoundRobin::new(eps.clone()))),
            ("random", Box::new(Random::new(eps.clone(), Some(1)))),
            ("weighted", Box::new(Weighted::new(eps.clone(), Some(1)))),
            (
                "p2c",
                Box::new(P2c::new(eps.clone(), Duration::from_secs(10), Some(1))),
            ),
            (
                "consistent_hash",
                Box::new(ConsistentHash::new(eps.clone(), 128, Some(1))),
            ),
        ];
        for (name, balancer) in &strategies {
            let mut k = 0usize;
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| {
                    k = (k + 1) & 1023;
                    black_box(balancer.pick(Some(&keys[k])))
                })
            });
        }
        // The full path a client takes: EndpointSet (arc-swap load + pick).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let set = EndpointSet::new(
            ServiceName::new("bench").expect("valid name"),
            BalanceConfig::builder()
                .strategy(Strategy::p2c())
                .build()
                .expect("valid config"),
        );
        set.update(instances(n));
        group.bench_with_input(BenchmarkId::new("endpoint_set_p2c", n), &n, |b, _| {
            b.iter(|| black_box(set.pick(None)))
        });
    }
    group.finish();
}

/// Per request, the whole p2c cycle: msp (`EndpointSet::pick`, start a
/// call, record its outcome) against tower's `p2c::Balance` over
/// `PeakEwma` services (`poll_ready` + `call` + response), same sizes.
fn bench_vs_tower(c: &mut Criterion) {
    let mut group = c.benchmark_group("p2c_request_cycle");
    let waker = futures_util::task::noop_waker();
    for n in [10usize, 1_000, 10_000] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let set = EndpointSet::new(
            ServiceName::new("bench").expect("valid name"),
            BalanceConfig::builder()
                .strategy(Strategy::p2c())
                .build()
                .expect("valid config"),
        );
        set.update(instances(n));
        group.bench_with_input(BenchmarkId::new("msp_endpoint_set", n), &n, |b, _| {
            b.iter(|| {
                let ep = set.pick(None).expect("an endpoint");
                set.record(ep.start(), Outcome::Success);
            })
        });

        let services: Vec<_> = (0..n)
            .map(|i| service_fn(move |_: ()| std::future::ready(Ok::<usize, Infallible>(i))))
            .collect();
        let discover = PeakEwmaDiscover::new(
            ServiceList::new(services),
            Duration::from_millis(10),
            Duration::from_secs(10),
            CompleteOnResponse::default(),
        );
        let mut balance = Balance::new(discover);
        let mut cx = Context::from_waker(&waker);
        group.bench_with_input(BenchmarkId::new("tower_p2c_balance", n), &n, |b, _| {
            b.iter(|| {
                match balance.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => {}
                    _ => panic!("service_fn services are always ready"),
                }
                let mut fut = std::pin::pin!(balance.call(()));
                black_box(fut.as_mut().poll(&mut cx))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_strategies, bench_vs_tower);
criterion_main!(benches);
