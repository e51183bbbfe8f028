//! Property tests of msp-resilience's parsers of outside input: quotas and
//! every middleware's settings (from configuration files), `Retry-After`
//! (from upstream responses), `x-msp-deadline-ms` and `grpc-timeout` (from
//! callers). None panics on any input, and each one with a formatter reads
//! back what it wrote.
//!
//! The seed is fixed, so a run is reproducible; `PROPTEST_CASES` raises the
//! number of cases.

use http::HeaderValue;
use msp_resilience::bulkhead::Adaptive;
use msp_resilience::hedge::HedgeDelay;
use msp_resilience::rate_limit::{Quota, RateLimitConfig};
use msp_resilience::retry::{BudgetConfig, retry_after};
use msp_resilience::timeout::{
    TimeoutConfig, format_grpc_timeout, parse_deadline_ms, parse_grpc_timeout,
};
use msp_resilience::{BulkheadConfig, ChaosConfig, CircuitBreakerConfig, HedgeConfig, RetryConfig};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;
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

/// A JSON value a configuration file might hold where a setting goes:
/// durations (some too large), quotas, numbers of every kind, words, text.
fn json_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{1,25} ?(ns|us|ms|s|m|min|h|d|w|y)".prop_map(Value::from),
        "[0-9]{1,12}/(s|min|hour|[0-9]{1,4}s)( burst [0-9]{1,12})?".prop_map(Value::from),
        "[a-z_]{1,16}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A change to one setting: most keep the setting's kind (a number for a
/// number, a duration for a duration, a quota for a quota) so the edited
/// settings often pass validation; some are `wild`, any JSON at all.
#[derive(Debug, Clone)]
struct Edit {
    at: Index,
    wild: bool,
    any: Value,
    int: u64,
    float: f64,
    duration: String,
    quota: String,
    word: String,
    flag: bool,
    inner: Index,
}

fn edit() -> impl Strategy<Value = Edit> {
    let int = prop_oneof![0u64..10, 0u64..10_000, any::<u64>()];
    let float = prop_oneof![0.0f64..1.0, 0.0f64..100.0, -1e3f64..1e3, any::<f64>()];
    let duration = prop_oneof![
        "[0-9]{1,4}(ms|s|m|h)",
        "[0-9]{1,25} ?(ns|us|s|d|y)",
        "[0-9a-z ]{0,8}"
    ];
    let word = prop_oneof!["[a-z_]{1,16}", any::<String>()];
    (
        (
            any::<Index>(),
            prop::bool::weighted(0.2),
            json_value(),
            int,
            float,
        ),
        (duration, quota_like(), word, any::<bool>(), any::<Index>()),
    )
        .prop_map(
            |((at, wild, any, int, float), (duration, quota, word, flag, inner))| Edit {
                at,
                wild,
                any,
                int,
                float,
                duration,
                quota,
                word,
                flag,
                inner,
            },
        )
}

/// `original` changed by `edit`, keeping its kind unless the edit is wild.
fn edited(original: &Value, edit: &Edit) -> Value {
    if edit.wild {
        return edit.any.clone();
    }
    match original {
        Value::Bool(_) => Value::Bool(edit.flag),
        Value::Number(n) if n.is_f64() => {
            serde_json::Number::from_f64(edit.float).map_or(Value::Null, Value::Number)
        }
        Value::Number(_) => Value::from(edit.int),
        Value::String(s) if humantime::parse_duration(s).is_ok() => {
            Value::from(edit.duration.clone())
        }
        Value::String(s) if s.parse::<Quota>().is_ok() => Value::from(edit.quota.clone()),
        Value::String(_) => Value::from(edit.word.clone()),
        // An optional setting left out: a duration or a number.
        Value::Null if edit.flag => Value::from(edit.duration.clone()),
        Value::Null => Value::from(edit.int),
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<&String> = map.keys().collect();
            let key = edit.inner.get(&keys).to_string();
            let mut map = map.clone();
            let inner = edited(
                &map[&key],
                &Edit {
                    wild: false,
                    ..edit.clone()
                },
            );
            map.insert(key, inner);
            Value::Object(map)
        }
        Value::Array(items) if !items.is_empty() => {
            let mut items = items.clone();
            let at = edit.inner.index(items.len());
            items[at] = edited(
                &items[at],
                &Edit {
                    wild: false,
                    ..edit.clone()
                },
            );
            Value::Array(items)
        }
        Value::Object(_) | Value::Array(_) => edit.any.clone(),
    }
}

/// `base` written as JSON plus the optional settings `extra` (left out
/// when unset), some of its settings changed by `edits`, read back: never a
/// panic, and what is accepted writes and reads back equal.
fn edited_config_round_trips<T>(
    base: &T,
    extra: Value,
    edits: Vec<Edit>,
) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(Value::Object(mut map)) = serde_json::to_value(base) else {
        panic!("{base:?} is not written as a JSON object");
    };
    if let Value::Object(extra) = extra {
        map.extend(extra);
    }
    // The unedited settings are valid (so the extra names are right).
    if let Err(e) = serde_json::from_value::<T>(Value::Object(map.clone())) {
        panic!("the base settings {map:?} are rejected: {e}");
    }
    let keys: Vec<String> = map.keys().cloned().collect();
    for edit in edits {
        let key = edit.at.get(&keys);
        let value = edited(&map[key], &edit);
        map.insert(key.clone(), value);
    }
    if let Ok(config) = serde_json::from_value::<T>(Value::Object(map)) {
        let written = serde_json::to_value(&config).expect("an accepted config writes");
        prop_assert_eq!(
            serde_json::from_value::<T>(written.clone()).ok(),
            Some(config),
            "{}",
            written
        );
    }
    Ok(())
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..4)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn circuit_breaker_config_from_any_settings(edits in edits()) {
        edited_config_round_trips(
            &CircuitBreakerConfig::default(),
            json!({"slow_call_duration": "2s", "consecutive_failures": 5, "max_wait_in_half_open": "10s"}),
            edits,
        )?;
    }

    #[test]
    fn retry_config_from_any_settings(edits in edits()) {
        edited_config_round_trips(
            &RetryConfig::default(),
            json!({"per_try_timeout": "1s", "retry_statuses": [503, 429], "never_retry_statuses": [501]}),
            edits,
        )?;
    }

    #[test]
    fn retry_budget_config_from_any_settings(edits in edits()) {
        edited_config_round_trips(&BudgetConfig::default(), json!({}), edits)?;
    }

    #[test]
    fn bulkhead_config_from_any_settings(edits in edits()) {
        edited_config_round_trips(
            &BulkheadConfig::default(),
            json!({"max_wait": "50ms", "adaptive": Adaptive::default()}),
            edits,
        )?;
    }

    #[test]
    fn chaos_config_from_any_settings(edits in edits()) {
        edited_config_round_trips(&ChaosConfig::default(), json!({}), edits)?;
    }

    #[test]
    fn timeout_config_from_any_settings(edits in edits()) {
        let base = TimeoutConfig::builder(Duration::from_secs(2)).build().expect("valid");
        edited_config_round_trips(&base, json!({}), edits)?;
    }

    #[test]
    fn hedge_config_from_any_settings(edits in edits(), fixed in any::<bool>()) {
        let delay = if fixed {
            HedgeDelay::Fixed(Duration::from_millis(50))
        } else {
            HedgeDelay::Percentile { percentile: 95.0, min_samples: 20, window: Duration::from_secs(30) }
        };
        let base = HedgeConfig::builder(delay).build().expect("valid");
        edited_config_round_trips(&base, json!({}), edits)?;
    }

    #[test]
    fn rate_limit_config_from_any_settings(edits in edits()) {
        let base = RateLimitConfig::new("100/min burst 10".parse().expect("quota"));
        edited_config_round_trips(&base, json!({"per_key": {"10.0.0.7": "10/s burst 5"}}), edits)?;
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_rate_limit_config_from_any_settings(edits in edits()) {
        let base = msp_resilience::rate_limit::RedisRateLimitConfig::new(
            "redis://127.0.0.1:6379",
            "100/min".parse().expect("quota"),
        );
        edited_config_round_trips(&base, json!({}), edits)?;
    }
}
