//! Passive outlier ejection, driven by recorded outcomes on paused time.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use msp_core::{Instance, InstanceId, Outcome, ServiceName};
use msp_discovery::balance::{BalanceConfig, Endpoint, EndpointSet, Strategy};
use msp_discovery::outlier::{FailureRate, OutlierConfig, OutlierConfigBuilder};
use std::time::Duration;

fn inst(port: u16) -> Instance {
    Instance::builder(
        ServiceName::new("svc").unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .id(InstanceId::new(format!("i{port:02}")).unwrap())
    .build()
    .unwrap()
}

fn set_with(outlier: OutlierConfigBuilder, n: u16) -> EndpointSet {
    let config = BalanceConfig::builder()
        .strategy(Strategy::RoundRobin)
        .outlier_detection(outlier.build().unwrap())
        .build()
        .unwrap();
    let set = EndpointSet::new(ServiceName::new("svc").unwrap(), config);
    set.update((1..=n).map(inst));
    set
}

fn fail(set: &EndpointSet, ep: &Endpoint, n: usize) {
    for _ in 0..n {
        set.record(ep.start(), Outcome::Failure);
    }
}

fn consecutive(n: u32) -> OutlierConfigBuilder {
    OutlierConfig::builder()
        .consecutive_failures(n)
        .without_failure_rate()
        .base_ejection_time(Duration::from_secs(10))
        .max_ejection_time(Duration::from_secs(25))
        .max_ejected_percent(50)
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_and_time_returns() {
    let set = set_with(consecutive(3), 4);
    let bad = set.snapshot().endpoints()[0].clone();
    fail(&set, &bad, 2);
    set.record(bad.start(), Outcome::Success); // resets the streak
    fail(&set, &bad, 2);
    assert!(!bad.is_ejected());
    fail(&set, &bad, 1);
    assert!(bad.is_ejected());
    assert_eq!(set.snapshot().ejected(), 1);
    assert!((0..300).all(|_| !set.pick(None).unwrap().same(&bad)));

    tokio::time::sleep(Duration::from_millis(9_999)).await;
    assert!(bad.is_ejected());
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(!bad.is_ejected(), "back after the base ejection time");
    assert!((0..4).any(|_| set.pick(None).unwrap().same(&bad)));
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_each_ejection_and_is_capped() {
    let set = set_with(consecutive(1), 4);
    let bad = set.snapshot().endpoints()[1].clone();
    for expected in [10u64, 20, 25, 25] {
        fail(&set, &bad, 1);
        assert!(bad.is_ejected());
        tokio::time::sleep(Duration::from_secs(expected) - Duration::from_millis(1)).await;
        assert!(bad.is_ejected(), "still out just before {expected}s");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(!bad.is_ejected(), "back after {expected}s");
    }
    // A long good stretch (max ejection time) resets the multiplier.
    tokio::time::sleep(Duration::from_secs(25)).await;
    fail(&set, &bad, 1);
    tokio::time::sleep(Duration::from_millis(10_001)).await;
    assert!(!bad.is_ejected());
}

#[tokio::test(start_paused = true)]
async fn max_ejected_percent_is_respected_and_never_empties() {
    // 10 endpoints, 20 %: at most 2 out at once.
    let set = set_with(consecutive(1).max_ejected_percent(20), 10);
    let eps = set.snapshot().endpoints().to_vec();
    for ep in &eps {
        fail(&set, ep, 5);
    }
    assert_eq!(set.snapshot().ejected(), 2);
    assert_eq!(set.snapshot().pool_len(), 8);

    // Even at 100 %, one endpoint always stays.
    let all = set_with(consecutive(1).max_ejected_percent(100), 3);
    for ep in all.snapshot().endpoints().to_vec() {
        fail(&all, &ep, 5);
    }
    assert_eq!(all.snapshot().ejected(), 2);
    assert!(all.pick(None).unwrap().is_available());

    // A single endpoint is never ejected.
    let one = set_with(consecutive(1), 1);
    let only = one.snapshot().endpoints()[0].clone();
    fail(&one, &only, 10);
    assert!(!only.is_ejected());
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_min_requests_in_window() {
    let cfg = OutlierConfig::builder()
        .without_consecutive_failures()
        .failure_rate(FailureRate {
            threshold: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
        })
        .max_ejected_percent(50);
    let set = set_with(cfg, 2);
    let ep = set.snapshot().endpoints()[0].clone();
    // 40 % failures: never ejected.
    for i in 0..50 {
        let outcome = if i % 5 >= 3 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        set.record(ep.start(), outcome);
    }
    assert!(!ep.is_ejected());
    // A new window: failures before min_requests do not count...
    tokio::time::sleep(Duration::from_secs(10)).await;
    fail(&set, &ep, 9);
    assert!(!ep.is_ejected());
    // ...the 10th call reaches min_requests at 100 % failures.
    fail(&set, &ep, 1);
    assert!(ep.is_ejected());
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_do_not_count_and_ejected_calls_are_ignored() {
    let set = set_with(consecutive(2), 2);
    let ep = set.snapshot().endpoints()[0].clone();
    set.record(ep.start(), Outcome::Failure);
    set.record(ep.start(), Outcome::Ignored);
    set.record(ep.start(), Outcome::Success);
    set.record(ep.start(), Outcome::Failure);
    assert!(!ep.is_ejected());
    // Calls in flight when it gets ejected finish later: they must not
    // extend the ejection or eject it again.
    let late: Vec<_> = (0..5).map(|_| ep.start()).collect();
    fail(&set, &ep, 1);
    assert!(ep.is_ejected());
    for call in late {
        set.record(call, Outcome::Failure);
    }
    tokio::time::sleep(Duration::from_millis(10_001)).await;
    assert!(!ep.is_ejected());
    assert_eq!(ep.in_flight(), 0);
}

#[test]
fn returns_without_a_runtime_via_return_expired() {
    // No tokio runtime: no timer task; `return_expired` (also called by
    // every `record`) brings endpoints back.
    let set = set_with(consecutive(1), 2);
    let ep = set.snapshot().endpoints()[0].clone();
    fail(&set, &ep, 1);
    assert!(ep.is_ejected());
    set.return_expired(tokio::time::Instant::now() + Duration::from_secs(11));
    assert!(!ep.is_ejected());
}

#[test]
fn config_deserializes_with_durations() {
    let c: OutlierConfig = serde_json::from_str(
        r#"{"consecutive_failures":3,"base_ejection_time":"15s","max_ejection_time":"2m","max_ejected_percent":30,
            "failure_rate":{"threshold":0.8,"min_requests":50,"window":"30s"}}"#,
    )
    .unwrap();
    assert_eq!(c.consecutive_failures(), Some(3));
    assert_eq!(c.failure_rate().map(|r| r.min_requests), Some(50));
    assert_eq!(c.ejection_time(2), Duration::from_secs(30));
    assert!(serde_json::from_str::<OutlierConfig>(r#"{"unknown":1}"#).is_err());
    // Invalid values are rejected when the file is read.
    let err = serde_json::from_str::<OutlierConfig>(
        r#"{"base_ejection_time":"1m","max_ejection_time":"10s"}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("below base_ejection_time"),
        "{err}"
    );
    // `null` turns a detector off.
    let off: OutlierConfig = serde_json::from_str(r#"{"consecutive_failures":null}"#).unwrap();
    assert_eq!(off.consecutive_failures(), None);
}

#[test]
fn ejections_and_pool_state_are_exported_as_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let set = set_with(consecutive(2), 4);
        let ep = set.snapshot().endpoints()[0].clone();
        fail(&set, &ep, 2);
        assert!(ep.is_ejected());
    });
    type Labels = Vec<(String, String)>;
    let values: Vec<(String, Labels, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let find = |name: &str| {
        values
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("metric {name} missing: {values:?}"))
    };
    let (_, labels, value) = find("msp_discovery_ejections_total");
    assert_eq!(value, &DebugValue::Counter(1));
    assert!(labels.contains(&("reason".into(), "consecutive_failures".into())));
    assert!(labels.contains(&("service".into(), "svc".into())));
    assert!(
        matches!(find("msp_discovery_endpoints_ejected").2, DebugValue::Gauge(v) if v.into_inner() == 1.0)
    );
    assert!(
        matches!(find("msp_discovery_endpoints_available").2, DebugValue::Gauge(v) if v.into_inner() == 3.0)
    );
    assert!(
        matches!(find("msp_discovery_panic_mode").2, DebugValue::Gauge(v) if v.into_inner() == 0.0)
    );
}
