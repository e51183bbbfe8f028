//! Balancing strategies: exact and statistical distributions with seeded
//! RNGs, zone preference, consistent hashing and panic mode.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use msp_core::{Instance, InstanceId, Outcome, ServiceName};
use msp_discovery::balance::{
    BalanceConfig, BalanceConfigBuilder, BalanceConfigError, Balancer, ConsistentHash, Endpoint,
    EndpointSet, P2c, Random, RoundRobin, Strategy, Weighted, ZonePreference,
};
use std::collections::HashMap;
use std::time::Duration;

fn svc() -> ServiceName {
    ServiceName::new("svc").unwrap()
}

fn cfg(strategy: Strategy) -> BalanceConfigBuilder {
    BalanceConfig::builder().strategy(strategy)
}

fn inst(port: u16) -> Instance {
    Instance::builder(svc(), format!("127.0.0.1:{port}").parse().unwrap())
        .id(InstanceId::new(format!("i{port}")).unwrap())
        .build()
        .unwrap()
}

fn weighted(port: u16, weight: u32) -> Instance {
    Instance::builder(svc(), format!("127.0.0.1:{port}").parse().unwrap())
        .id(InstanceId::new(format!("i{port}")).unwrap())
        .weight(weight)
        .build()
        .unwrap()
}

fn zoned(port: u16, zone: &str) -> Instance {
    Instance::builder(svc(), format!("127.0.0.1:{port}").parse().unwrap())
        .id(InstanceId::new(format!("i{port}")).unwrap())
        .zone(zone)
        .build()
        .unwrap()
}

fn eps(instances: impl IntoIterator<Item = Instance>) -> Vec<Endpoint> {
    instances
        .into_iter()
        .map(|i| Endpoint::new(i, Duration::from_millis(1)))
        .collect()
}

fn counts(b: &dyn Balancer, picks: usize, key: Option<&[u8]>) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for _ in 0..picks {
        *m.entry(b.pick(key).unwrap().addr().port()).or_default() += 1;
    }
    m
}

fn assert_share(counts: &HashMap<u16, usize>, port: u16, expected: f64, total: usize) {
    let got = *counts.get(&port).unwrap_or(&0) as f64 / total as f64;
    let rel = (got - expected).abs() / expected;
    assert!(
        rel <= 0.02,
        "port {port}: share {got:.4}, expected {expected:.4} (off by {:.2} %)",
        rel * 100.0
    );
}

#[test]
fn round_robin_is_exact() {
    let rr = RoundRobin::new(eps((1..=4).map(inst)));
    let c = counts(&rr, 4_000, None);
    for port in 1..=4 {
        assert_eq!(c[&port], 1_000);
    }
}

#[test]
fn round_robin_is_exact_across_threads() {
    let rr = std::sync::Arc::new(RoundRobin::new(eps((1..=4).map(inst))));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let rr = rr.clone();
            std::thread::spawn(move || counts(&*rr, 10_000, None))
        })
        .collect();
    let mut total: HashMap<u16, usize> = HashMap::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    assert!((1..=4).all(|p| total[&p] == 10_000), "{total:?}");
}

#[test]
fn random_is_uniform() {
    let r = Random::new(eps((1..=4).map(inst)), Some(11));
    let c = counts(&r, 100_000, None);
    for port in 1..=4 {
        assert_share(&c, port, 0.25, 100_000);
    }
}

#[test]
fn weighted_follows_weights() {
    let w = Weighted::new(
        eps([
            weighted(1, 1),
            weighted(2, 2),
            weighted(3, 3),
            weighted(4, 4),
        ]),
        Some(5),
    );
    let c = counts(&w, 100_000, None);
    for (port, weight) in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)] {
        assert_share(&c, port, weight / 10.0, 100_000);
    }
}

#[test]
fn weighted_handles_extreme_weights() {
    let w = Weighted::new(eps([weighted(1, 1), weighted(2, 999)]), Some(9));
    let c = counts(&w, 100_000, None);
    assert_share(&c, 2, 0.999, 100_000);
    assert!(c.get(&1).copied().unwrap_or(0) > 0);
}

#[test]
fn seeded_picks_are_reproducible() {
    let a = Random::new(eps((1..=10).map(inst)), Some(42));
    let b = Random::new(eps((1..=10).map(inst)), Some(42));
    for _ in 0..1_000 {
        assert_eq!(a.pick(None).unwrap().addr(), b.pick(None).unwrap().addr());
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_avoids_the_slow_and_the_busy() {
    let set = EndpointSet::new(svc(), cfg(Strategy::p2c()).seed(3).build().unwrap());
    set.update((1..=3).map(inst));
    let snap = set.snapshot();
    let slow = snap.endpoints()[0].clone();
    // Port 1 answers in 200 ms, the others in 1 ms.
    let call = slow.start();
    tokio::time::advance(Duration::from_millis(200)).await;
    set.record(call, Outcome::Success);
    for ep in &snap.endpoints()[1..] {
        let call = ep.start();
        tokio::time::advance(Duration::from_millis(1)).await;
        set.record(call, Outcome::Success);
    }
    let c = counts(&set, 3_000, None);
    assert_eq!(
        c.get(&1),
        None,
        "the slow endpoint always loses its duel: {c:?}"
    );
    assert!(c[&2] > 0 && c[&3] > 0, "{c:?}");

    // Load on port 2 (50 calls in flight: cost 51 ms) makes it lose every
    // duel against port 3; it still beats the 200 ms port 1.
    let busy: Vec<_> = (0..50).map(|_| snap.endpoints()[1].start()).collect();
    let c = counts(&set, 3_000, None);
    assert_eq!(c.get(&1), None, "{c:?}");
    assert_share(&c, 3, 2.0 / 3.0, 3_000);
    drop(busy);
}

#[tokio::test(start_paused = true)]
async fn p2c_tries_a_slow_endpoint_again_after_decay() {
    let p2c_eps = eps((1..=2).map(inst));
    let set = EndpointSet::new(
        svc(),
        cfg(Strategy::P2c {
            decay: Duration::from_secs(1),
            default_rtt: Duration::from_millis(1),
        })
        .build()
        .unwrap(),
    );
    set.update(p2c_eps.iter().map(|e| e.instance().clone()));
    let slow = set.snapshot().endpoints()[0].clone();
    let call = slow.start();
    tokio::time::advance(Duration::from_secs(2)).await;
    set.record(call, Outcome::Success);
    assert_eq!(set.pick(None).unwrap().addr().port(), 2);
    // The estimate decays towards zero; a minute later the slow one wins
    // against a fresh 1 ms estimate... only if the other was updated since.
    let fast = set.snapshot().endpoints()[1].clone();
    tokio::time::advance(Duration::from_secs(60)).await;
    let call = fast.start();
    tokio::time::advance(Duration::from_millis(5)).await;
    set.record(call, Outcome::Success);
    assert_eq!(set.pick(None).unwrap().addr().port(), 1);
}

#[test]
fn p2c_is_fair_without_feedback() {
    let p = P2c::new(eps((1..=5).map(inst)), Duration::from_secs(10), Some(8));
    let c = counts(&p, 100_000, None);
    // Equal costs: the first drawn wins, which is uniform.
    for port in 1..=5 {
        assert_share(&c, port, 0.2, 100_000);
    }
}

#[test]
fn consistent_hash_is_sticky_and_remaps_minimally() {
    let all = eps((1..=10).map(inst));
    let ring = ConsistentHash::new(all.clone(), 128, None);
    let keys: Vec<String> = (0..10_000).map(|i| format!("session-{i}")).collect();
    let before: Vec<u16> = keys
        .iter()
        .map(|k| ring.pick(Some(k.as_bytes())).unwrap().addr().port())
        .collect();
    // Stable: same answer again, and from a ring built anew (another client).
    let again = ConsistentHash::new(all.clone(), 128, Some(99));
    for (k, p) in keys.iter().zip(&before) {
        assert_eq!(again.pick(Some(k.as_bytes())).unwrap().addr().port(), *p);
    }
    // Fair enough: every node gets 10 % ± 3 points of the keys.
    let mut load: HashMap<u16, usize> = HashMap::new();
    for p in &before {
        *load.entry(*p).or_default() += 1;
    }
    for port in 1..=10 {
        let share = load[&port] as f64 / keys.len() as f64;
        assert!((0.07..=0.13).contains(&share), "port {port}: {share}");
    }
    // Remove node 4: only its keys move.
    let without: Vec<Endpoint> = all
        .iter()
        .filter(|e| e.addr().port() != 4)
        .cloned()
        .collect();
    let ring2 = ConsistentHash::new(without, 128, None);
    let mut moved = 0;
    for (k, p) in keys.iter().zip(&before) {
        let now = ring2.pick(Some(k.as_bytes())).unwrap().addr().port();
        if *p == 4 {
            assert_ne!(now, 4);
            moved += 1;
        } else {
            assert_eq!(now, *p, "key {k} moved although its node stayed");
        }
    }
    assert_eq!(moved, load[&4]);
}

#[test]
fn consistent_hash_without_key_spreads() {
    let ring = ConsistentHash::new(eps((1..=4).map(inst)), 16, Some(1));
    let c = counts(&ring, 40_000, None);
    assert_eq!(c.len(), 4);
}

#[test]
fn unhealthy_endpoints_leave_and_keys_follow() {
    let set = EndpointSet::new(svc(), cfg(Strategy::consistent_hash()).build().unwrap());
    set.update((1..=5).map(inst));
    let key = b"user-7";
    let home = set.pick(Some(key)).unwrap();
    set.set_health(&home, false);
    let away = set.pick(Some(key)).unwrap();
    assert!(!away.same(&home));
    set.set_health(&home, true);
    assert!(
        set.pick(Some(key)).unwrap().same(&home),
        "sticky again once healthy"
    );
}

#[test]
fn zone_preference_keeps_traffic_local_and_falls_back() {
    let set = EndpointSet::new(
        svc(),
        cfg(Strategy::Random)
            .zone_preference(ZonePreference::new("a"))
            .seed(4)
            .build()
            .unwrap(),
    );
    set.update([zoned(1, "a"), zoned(2, "a"), zoned(3, "b"), zoned(4, "b")]);
    let c = counts(&set, 100_000, None);
    assert_eq!(c.get(&3), None);
    assert_eq!(c.get(&4), None);
    assert_share(&c, 1, 0.5, 100_000);
    assert!(set.snapshot().is_local_zone());

    // One local endpoint down: the other local one takes it all.
    let snap = set.snapshot();
    set.set_health(&snap.endpoints()[0], false);
    let c = counts(&set, 10_000, None);
    assert_eq!(c.get(&2), Some(&10_000));

    // Both local endpoints down: every zone.
    set.set_health(&snap.endpoints()[1], false);
    let c = counts(&set, 100_000, None);
    assert_share(&c, 3, 0.5, 100_000);
    assert_share(&c, 4, 0.5, 100_000);
    assert!(!set.snapshot().is_local_zone());
}

#[test]
fn zone_preference_min_available_fraction() {
    let set = EndpointSet::new(
        svc(),
        cfg(Strategy::RoundRobin)
            .zone_preference(ZonePreference::new("a").min_available(0.75))
            .build()
            .unwrap(),
    );
    set.update([
        zoned(1, "a"),
        zoned(2, "a"),
        zoned(3, "a"),
        zoned(4, "a"),
        zoned(5, "b"),
    ]);
    assert!(set.snapshot().is_local_zone());
    let snap = set.snapshot();
    set.set_health(&snap.endpoints()[0], false); // 3 of 4 local: still local
    assert!(set.snapshot().is_local_zone());
    set.set_health(&snap.endpoints()[1], false); // 2 of 4: below 75 %
    let snap = set.snapshot();
    assert!(!snap.is_local_zone());
    assert_eq!(snap.pool_len(), 3);
    let c = counts(&set, 300, None);
    assert_eq!(c[&5], 100);
}

#[test]
fn panic_mode_balances_over_all_when_none_is_healthy() {
    let set = EndpointSet::new(svc(), cfg(Strategy::RoundRobin).build().unwrap());
    set.update((1..=3).map(inst));
    let snap = set.snapshot();
    for ep in snap.endpoints() {
        set.set_health(ep, false);
    }
    let snap = set.snapshot();
    assert!(snap.is_panic());
    assert_eq!(snap.available(), 0);
    let c = counts(&set, 300, None);
    assert!((1..=3).all(|p| c[&p] == 100), "{c:?}");
    set.set_health(&snap.endpoints()[2], true);
    assert!(!set.snapshot().is_panic());
    let c = counts(&set, 30, None);
    assert_eq!(c.get(&3), Some(&30));
}

#[test]
fn panic_threshold_fraction() {
    let set = EndpointSet::new(
        svc(),
        cfg(Strategy::RoundRobin)
            .panic_threshold(0.5)
            .build()
            .unwrap(),
    );
    set.update((1..=4).map(inst));
    let snap = set.snapshot();
    set.set_health(&snap.endpoints()[0], false);
    set.set_health(&snap.endpoints()[1], false);
    assert!(!set.snapshot().is_panic(), "2 of 4 is not below 50 %");
    set.set_health(&snap.endpoints()[2], false);
    assert!(set.snapshot().is_panic());
    assert_eq!(set.snapshot().pool_len(), 4);
}

#[test]
fn update_keeps_state_of_unchanged_endpoints() {
    let set = EndpointSet::new(svc(), BalanceConfig::default());
    set.update([inst(1), inst(2)]);
    let one = set.snapshot().endpoints()[0].clone();
    set.set_health(&one, false);
    assert!(!set.update([inst(2), inst(1)]), "same members, other order");
    assert!(set.update([inst(1), inst(3)]));
    let snap = set.snapshot();
    assert!(snap.endpoints()[0].same(&one));
    assert!(!snap.endpoints()[0].is_healthy());
    // A changed instance (same id, new weight) starts fresh.
    let mut changed = weighted(1, 5);
    assert!(set.insert(changed.clone()));
    let fresh = set.snapshot().get(changed.id()).unwrap().clone();
    assert!(!fresh.same(&one) && fresh.is_healthy());
    changed = inst(3);
    assert!(set.remove(changed.id()));
    assert_eq!(set.len(), 1);
}

#[test]
fn empty_set_picks_nothing() {
    let set = EndpointSet::new(svc(), BalanceConfig::default());
    assert!(set.pick(None).is_none());
    assert!(set.is_empty());
}

#[test]
fn config_from_json_and_validation() {
    let c: BalanceConfig = serde_json::from_str(
        r#"{"strategy":{"consistent_hash":{"vnodes":64}},"zone":{"zone":"eu-1a","min_available":0.5},"panic_threshold":0.3}"#,
    )
    .unwrap();
    assert_eq!(c.strategy(), &Strategy::ConsistentHash { vnodes: 64 });
    assert_eq!(c.zone_preference().map(|z| z.zone()), Some("eu-1a"));
    assert_eq!(c.panic_threshold(), 0.3);
    let p2c: BalanceConfig =
        serde_json::from_str(r#"{"strategy":{"p2c":{"decay":"5s"}}}"#).unwrap();
    assert!(
        matches!(p2c.strategy(), Strategy::P2c { decay, .. } if *decay == Duration::from_secs(5))
    );
    assert!(
        serde_json::from_str::<BalanceConfig>(r#"{"strategy":"round_robin","typo":1}"#).is_err()
    );
    // `outlier: null` turns outlier detection off.
    let off: BalanceConfig = serde_json::from_str(r#"{"outlier":null}"#).unwrap();
    assert!(off.outlier().is_none());
    // What serializes deserializes to the same validated value.
    let back: BalanceConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);

    assert_eq!(
        BalanceConfig::builder().panic_threshold(1.5).build(),
        Err(BalanceConfigError::Fraction {
            name: "panic_threshold",
            value: 1.5,
        })
    );
    assert_eq!(
        cfg(Strategy::ConsistentHash { vnodes: 0 }).build(),
        Err(BalanceConfigError::ZeroVnodes)
    );
    // Invalid values in a file are deserialization errors, never a config
    // that fails later.
    let err = serde_json::from_str::<BalanceConfig>(r#"{"zone":{"zone":""}}"#).unwrap_err();
    assert!(err.to_string().contains("zone name is empty"), "{err}");
    let err = serde_json::from_str::<BalanceConfig>(r#"{"outlier":{"max_ejected_percent":101}}"#)
        .unwrap_err();
    assert!(err.to_string().contains("max_ejected_percent"), "{err}");
}
