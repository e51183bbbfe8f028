//! Property tests of msp-resilience's parsers of outside input: quotas (from
//! configuration files), `Retry-After` (from upstream responses),
//! `x-msp-deadline-ms` and `grpc-timeout` (from callers). None panics on
//! any input, and each one with a formatter reads back what it wrote.
//!
//! The seed is fixed, so a run is reproducible; `PROPTEST_CASES` raises the
//! number of cases.

use http::HeaderValue;
use msp_resilience::rate_limit::Quota;
use msp_resilience::retry::retry_after;
use msp_resilience::timeout::{format_grpc_timeout, parse_deadline_ms, parse_grpc_timeout};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(15),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that looks like a quota: most of it reaches deep into the parser.
fn quota_like() -> impl Strategy<Value = String> {
    let count = prop_oneof![
        "[0-9]{1,12}",
        "-?[0-9 ]{0,4}",
        any::<u32>().prop_map(|n| n.to_string())
    ];
    let period = prop_oneof![
        Just("s".to_owned()),
        Just("min".to_owned()),
        Just("hour".to_owned()),
        Just("day".to_owned()),
        "[0-9]{1,20}(ns|ms|s|m|h|d|us|y|w)",
        "[0-9]{1,6}(h|m) ?[0-9]{1,6}(m|s)",
        "[a-zA-Z0-9. ]{0,10}",
    ];
    let burst = prop_oneof![
        Just(String::new()),
        "[0-9]{1,12}".prop_map(|b| format!(" burst {b}")),
        "[ a-z0-9]{0,16}",
    ];
    (count, "[ /]{0,3}", period, burst).prop_map(|(c, sep, p, b)| format!("{c}{sep}{p}{b}"))
}

/// Any duration up to ~3,000 years, often a round number of a unit.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..100_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..100_000_000).prop_map(Duration::from_millis),
        (0u64..100_000_000).prop_map(Duration::from_secs),
        (0u64..100_000).prop_map(|h| Duration::from_secs(h * 3600)),
    ]
}

/// Any instant between 1970 and 9999 (what an HTTP-date can name).
fn instant() -> impl Strategy<Value = SystemTime> {
    (0u64..253_402_300_799).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Any bytes a header value may hold.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        any::<Vec<u8>>(),
        "[0-9]{0,30}".prop_map(String::into_bytes),
        "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{1,5} [0-9:]{8} GMT".prop_map(String::into_bytes),
        "[0-9]{0,20}[HMSmunx]?".prop_map(String::into_bytes),
    ]
    .prop_filter_map("not a header value", |b| HeaderValue::from_bytes(&b).ok())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn quota_parsing_never_panics(s in any::<String>()) {
        let _ = s.parse::<Quota>();
    }

    #[test]
    fn quota_like_text_parses_or_is_rejected_without_panic(s in quota_like()) {
        if let Ok(q) = s.parse::<Quota>() {
            prop_assert!(q.limit() > 0 && q.burst() > 0 && !q.period().is_zero());
            prop_assert!(!q.emission_interval().is_zero());
        }
    }

    #[test]
    fn quota_deserialization_never_panics(s in any::<String>()) {
        let _ = serde_json::from_value::<Quota>(serde_json::Value::String(s));
    }

    #[test]
    fn quota_display_round_trips(
        limit in 1u32..=u32::MAX,
        period in duration(),
        burst in prop_oneof![Just(None), (1u32..=u32::MAX).prop_map(Some)],
    ) {
        let quota = match burst {
            None => Quota::new(limit, period),
            Some(b) => Quota::with_burst(limit, period, b),
        };
        // Quotas finer than a nanosecond (or with a zero period) are refused.
        if let Ok(q) = quota {
            let text = q.to_string();
            prop_assert_eq!(text.parse::<Quota>(), Ok(q), "{}", text);
            let json = serde_json::to_string(&q).expect("serializes");
            prop_assert_eq!(serde_json::from_str::<Quota>(&json).ok(), Some(q), "{}", json);
        }
    }

    #[test]
    fn retry_after_never_panics(value in header_value(), now in instant()) {
        let _ = retry_after(&value, now);
    }

    #[test]
    fn retry_after_delta_seconds_round_trip(secs in any::<u64>(), now in instant()) {
        let value = HeaderValue::from(secs);
        prop_assert_eq!(retry_after(&value, now), Some(Duration::from_secs(secs)));
    }

    #[test]
    fn retry_after_http_date_round_trips(now in instant(), ahead in 0u64..10_000_000, past in any::<bool>()) {
        let at = if past {
            now.checked_sub(Duration::from_secs(ahead)).unwrap_or(UNIX_EPOCH)
        } else {
            now + Duration::from_secs(ahead)
        };
        prop_assume!(at < UNIX_EPOCH + Duration::from_secs(253_402_300_799));
        let value = HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("a date is a header value");
        let expected = if past { Duration::ZERO } else { Duration::from_secs(ahead) };
        prop_assert_eq!(retry_after(&value, now), Some(expected));
    }

    #[test]
    fn deadline_ms_never_panics_and_round_trips(value in header_value(), ms in any::<u64>()) {
        let _ = parse_deadline_ms(&value);
        prop_assert_eq!(parse_deadline_ms(&HeaderValue::from(ms)), Some(Duration::from_millis(ms)));
    }

    #[test]
    fn grpc_timeout_never_panics(value in header_value()) {
        let _ = parse_grpc_timeout(&value);
    }

    #[test]
    fn grpc_timeout_round_trips_rounded_up(d in duration()) {
        let formatted = format_grpc_timeout(d);
        let back = parse_grpc_timeout(&formatted);
        prop_assert!(back.is_some(), "{:?} formatted as {:?}", d, formatted);
        let back = back.unwrap_or_default();
        // Rounded up, never down, and by at most one unit of an 8-digit
        // value: under one part in ten thousand.
        prop_assert!(back >= d, "{:?} -> {:?} -> {:?}", d, formatted, back);
        prop_assert!((back - d).as_nanos() * 10_000 <= d.as_nanos().max(1), "{:?} -> {:?}", d, back);
    }
}
