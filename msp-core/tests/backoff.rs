//! Backoff bounds and jitter ranges, deterministic under a seeded RNG.

use msp_core::backoff::{Backoff, InvalidBackoff, Jitter};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(jitter: Jitter) -> Backoff {
    Backoff::builder()
        .initial(ms(100))
        .multiplier(2.0)
        .max_delay(ms(3_000))
        .max_attempts(12)
        .jitter(jitter)
        .build()
        .expect("valid policy")
}

#[test]
fn exponential_without_jitter_is_exact_and_capped() {
    let d: Vec<_> = policy(Jitter::None).iter().collect();
    let want: Vec<_> = [
        100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000, 3000, 3000,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(d, want);
}

#[test]
fn full_jitter_stays_in_zero_to_exp() {
    let p = policy(Jitter::Full);
    for seed in 0..200 {
        for (n, d) in p.iter_seeded(seed).enumerate() {
            let exp = p.exponential(n as u32);
            assert!(d <= exp, "seed {seed} attempt {n}: {d:?} > {exp:?}");
        }
    }
    // And it really is random: not every draw equals the cap.
    let draws: Vec<_> = p.iter_seeded(1).collect();
    assert!(draws.iter().zip(0..).any(|(d, n)| *d != p.exponential(n)));
}

#[test]
fn equal_jitter_stays_in_half_to_exp() {
    let p = policy(Jitter::Equal);
    for seed in 0..200 {
        for (n, d) in p.iter_seeded(seed).enumerate() {
            let exp = p.exponential(n as u32);
            assert!(d >= exp / 2 && d <= exp, "seed {seed} attempt {n}: {d:?}");
        }
    }
}

#[test]
fn decorrelated_jitter_stays_in_initial_to_three_times_previous() {
    let p = policy(Jitter::Decorrelated);
    for seed in 0..200 {
        let mut prev = p.initial();
        for d in p.iter_seeded(seed) {
            assert!(d >= p.initial(), "{d:?} below initial");
            assert!(d <= p.max_delay(), "{d:?} above max");
            assert!(d <= prev * 3, "{d:?} above 3 × {prev:?}");
            prev = d;
        }
    }
}

#[test]
fn same_seed_same_delays_different_seed_different_delays() {
    for j in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let p = policy(j);
        let a: Vec<_> = p.iter_seeded(42).collect();
        let b: Vec<_> = p.iter_seeded(42).collect();
        let c: Vec<_> = p.iter_seeded(43).collect();
        assert_eq!(a, b, "{j:?}");
        assert_ne!(a, c, "{j:?}");
    }
}

#[test]
fn full_jitter_mean_is_about_half_of_exp() {
    // Statistical sanity with a fixed seed: mean of U[0, 1000ms] ≈ 500ms.
    let p = Backoff::builder()
        .initial(ms(1000))
        .multiplier(1.0)
        .max_delay(ms(1000))
        .max_attempts(20_000)
        .jitter(Jitter::Full)
        .build()
        .expect("valid");
    let total: Duration = p.iter_seeded(9).sum();
    let mean = total / 20_000;
    assert!(mean > ms(480) && mean < ms(520), "mean {mean:?}");
}

#[test]
fn max_attempts_and_max_elapsed_end_the_iterator() {
    let p = Backoff::builder()
        .initial(ms(100))
        .max_delay(ms(1000))
        .jitter(Jitter::None)
        .max_elapsed(ms(1000))
        .build()
        .expect("valid");
    // 100 + 200 + 400 = 700; + 800 would pass 1000.
    let d: Vec<_> = p.iter().collect();
    assert_eq!(d, [ms(100), ms(200), ms(400)]);

    let mut it = policy(Jitter::Full).iter_seeded(3);
    assert_eq!(it.by_ref().count(), 12);
    assert_eq!(it.attempts(), 12);
    it.reset();
    assert_eq!(it.attempts(), 0);
    assert_eq!(it.count(), 12);

    let none = Backoff::builder().max_attempts(0).build().expect("valid");
    assert_eq!(none.iter().next(), None);
}

#[test]
fn unlimited_iterator_keeps_going_at_the_cap() {
    let p = Backoff::builder()
        .initial(ms(1))
        .max_delay(ms(50))
        .jitter(Jitter::None)
        .build()
        .expect("valid");
    let d: Vec<_> = p.iter().take(1000).collect();
    assert_eq!(d.len(), 1000);
    assert_eq!(d[999], ms(50));
}

#[test]
fn invalid_policies_are_typed_errors() {
    assert_eq!(
        Backoff::builder().initial(Duration::ZERO).build(),
        Err(InvalidBackoff::ZeroInitial)
    );
    assert!(matches!(
        Backoff::builder().multiplier(0.5).build(),
        Err(InvalidBackoff::BadMultiplier(_))
    ));
    assert!(matches!(
        Backoff::builder().multiplier(f64::NAN).build(),
        Err(InvalidBackoff::BadMultiplier(_))
    ));
    assert!(matches!(
        Backoff::builder().initial(ms(10)).max_delay(ms(5)).build(),
        Err(InvalidBackoff::MaxBelowInitial { .. })
    ));
    // From config, a bad value is an error, not a panic.
    let bad: Result<Backoff, _> = serde_json::from_str(r#"{"initial":"0s"}"#);
    assert!(bad.is_err());
    let unknown: Result<Backoff, _> = serde_json::from_str(r#"{"initail":"1s"}"#);
    assert!(unknown.is_err());
    let ok: Backoff =
        serde_json::from_str(r#"{"initial":"250ms","multiplier":1.5,"max_delay":"5s"}"#)
            .expect("valid");
    assert_eq!(ok.initial(), ms(250));
    assert_eq!(
        Backoff::constant(ms(7)).expect("valid").iter().nth(5),
        Some(ms(7))
    );
}

#[test]
fn periodic_jitter_stays_within_the_fraction_and_spreads() {
    use msp_core::backoff::jitter;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    let mut rng = SmallRng::seed_from_u64(42);
    let base = Duration::from_secs(10);
    let (lo, hi) = (Duration::from_secs(8), Duration::from_secs(12));
    let draws: Vec<_> = (0..1_000).map(|_| jitter(base, 0.2, &mut rng)).collect();
    assert!(
        draws.iter().all(|d| (lo..=hi).contains(d)),
        "in [8 s, 12 s]"
    );
    // Both halves of the range are used: replicas drift apart both ways.
    assert!(draws.iter().any(|d| *d < Duration::from_secs(9)));
    assert!(draws.iter().any(|d| *d > Duration::from_secs(11)));

    // Out-of-range fractions are clamped, never a panic.
    assert_eq!(jitter(base, 0.0, &mut rng), base);
    assert_eq!(jitter(base, -1.0, &mut rng), base);
    assert_eq!(jitter(base, f64::NAN, &mut rng), base);
    assert!(jitter(base, 5.0, &mut rng) <= Duration::from_secs(20));
    let _ = jitter(Duration::MAX, 1.0, &mut rng);
    assert_eq!(jitter(Duration::ZERO, 0.5, &mut rng), Duration::ZERO);
}
