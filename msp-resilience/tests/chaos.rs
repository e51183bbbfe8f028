//! Chaos: seeded error and latency injection, runtime switch.

use msp_resilience::chaos::{ChaosConfig, ChaosLayer, InjectedFault};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

fn echo(
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(n) }
    })
}

async fn outcomes(config: ChaosConfig, n: u32) -> Vec<bool> {
    let svc = ServiceBuilder::new()
        .layer(ChaosLayer::new(config).expect("valid"))
        .service(echo(Arc::default()));
    let mut out = Vec::new();
    for i in 0..n {
        out.push(svc.clone().oneshot(i).await.is_ok());
    }
    out
}

#[tokio::test]
async fn error_rate_is_met_and_the_seed_makes_it_repeatable() {
    let config = ChaosConfig {
        error_rate: 0.3,
        seed: Some(7),
        ..ChaosConfig::default()
    };
    let a = outcomes(config, 2000).await;
    let b = outcomes(config, 2000).await;
    assert_eq!(a, b, "same seed, same faults");
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!((540..660).contains(&failures), "{failures} of 2000 at 30 %");

    let other = outcomes(
        ChaosConfig {
            seed: Some(8),
            ..config
        },
        2000,
    )
    .await;
    assert_ne!(a, other, "another seed, other faults");
}

#[tokio::test]
async fn injected_errors_do_not_reach_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = ChaosLayer::new(ChaosConfig {
        error_rate: 1.0,
        seed: Some(1),
        ..ChaosConfig::default()
    })
    .expect("valid");
    let chaos = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(echo(calls.clone()));
    for i in 0..10 {
        let err = svc.clone().oneshot(i).await.expect_err("always fails");
        assert!(err.is::<InjectedFault>());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(chaos.injected_errors(), 10);
}

#[tokio::test]
async fn custom_error_and_runtime_toggle() {
    #[derive(Debug, thiserror::Error)]
    #[error("simulated outage")]
    struct Outage;

    let layer = ChaosLayer::with_error(
        ChaosConfig {
            error_rate: 1.0,
            seed: Some(3),
            ..ChaosConfig::default()
        },
        || Outage,
    )
    .expect("valid");
    let chaos = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(echo(Arc::default()));
    assert!(svc.clone().oneshot(1).await.expect_err("on").is::<Outage>());

    // Every clone of every service sees the switch.
    chaos.disable();
    assert_eq!(svc.clone().oneshot(2).await.expect("off"), 2);
    chaos.enable();
    chaos.set_error_rate(0.0).expect("valid rate");
    assert_eq!(svc.clone().oneshot(3).await.expect("rate 0"), 3);
    assert!(chaos.set_error_rate(1.5).is_err());
}

#[tokio::test(start_paused = true)]
async fn latency_is_injected_before_the_call() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = ChaosLayer::new(ChaosConfig {
        latency_rate: 1.0,
        latency: Duration::from_millis(250),
        seed: Some(1),
        ..ChaosConfig::default()
    })
    .expect("valid");
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo(calls.clone()));
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot(5).await.expect("delayed"), 5);
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    // A random delay in a range.
    layer
        .handle()
        .set_latency(Duration::from_millis(100), Duration::from_millis(200))
        .expect("valid range");
    for _ in 0..20 {
        let start = Instant::now();
        svc.clone().oneshot(1).await.expect("delayed");
        let took = start.elapsed();
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&took),
            "{took:?}"
        );
    }
    assert_eq!(layer.handle().injected_delays(), 21);
}

#[test]
fn config_is_validated() {
    assert!(
        ChaosLayer::new(ChaosConfig {
            error_rate: -0.1,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        ChaosLayer::new(ChaosConfig {
            latency_rate: 2.0,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        ChaosLayer::new(ChaosConfig {
            latency: Duration::from_secs(2),
            latency_max: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .is_err()
    );
    assert!(serde_json::from_str::<ChaosConfig>(r#"{"eror_rate": 0.1}"#).is_err());
}
