//! Property tests of msp-discovery's parsers of outside input: the static
//! registry's instance list, and the balance, outlier-detection,
//! health-check and registration settings (from configuration files, as
//! JSON or YAML). None panics on any input; what parses serializes and
//! reads back equal.
//!
//! The seed is fixed, so a run is reproducible; `PROPTEST_CASES` raises the
//! number of cases.

use msp_discovery::BalanceConfig;
use msp_discovery::health::HealthCheckConfig;
use msp_discovery::outlier::OutlierConfig;
use msp_discovery::registry::{RegistrationConfig, StaticRegistry};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(15),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What a settings file holds where a value goes: durations (some absurd),
/// fractions, counts, strategy words, addresses, names, any text.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{1,25} ?(ns|us|ms|s|m|min|h|d|w|y)".prop_map(Value::from),
        "(round_robin|random|weighted|p2c|consistent_hash|least_request|[a-z_]{1,12})"
            .prop_map(Value::from),
        "([0-9]{1,3}\\.){3}[0-9]{1,3}:[0-9]{1,6}|\\[[0-9a-f:]{2,12}\\]:[0-9]{1,5}|[a-z.]{1,12}:[0-9]{1,4}"
            .prop_map(Value::from),
        "(/[a-z._-]{0,8}){0,3}|[a-z0-9][a-z0-9._-]{0,20}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_-]{1,14}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `seed` with the value at place `at` (in document order) replaced by
/// `with`, so most cases get past the outer layers of the parser.
fn mutate(mut seed: Value, at: Index, with: Value) -> Value {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Object(m) => m.values().map(count).sum(),
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    fn replace(v: &mut Value, n: &mut usize, with: &mut Option<Value>) {
        if *n == 0 {
            if let Some(w) = with.take() {
                *v = w;
            }
            return;
        }
        *n -= 1;
        match v {
            Value::Object(m) => m.values_mut().for_each(|c| replace(c, n, with)),
            Value::Array(a) => a.iter_mut().for_each(|c| replace(c, n, with)),
            _ => {}
        }
    }
    let mut n = at.index(count(&seed));
    replace(&mut seed, &mut n, &mut Some(with));
    seed
}

/// `doc` parses or is refused without a panic; what parses writes JSON
/// that reads back equal.
fn parses_and_round_trips<T>(doc: Value) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let text = doc.to_string();
    if let Ok(parsed) = serde_json::from_value::<T>(doc) {
        let back = serde_json::to_value(&parsed).expect("serializes");
        let again = serde_json::from_value::<T>(back.clone());
        prop_assert_eq!(again.as_ref().ok(), Some(&parsed), "{} -> {}", text, back);
    }
    Ok(())
}

fn balance_seed() -> Value {
    json!({"strategy": "round_robin", "zone": {"zone": "eu-1a", "min_available": 0.5},
           "panic_threshold": 0.3, "seed": 7,
           "outlier": {"consecutive_failures": 3, "base_ejection_time": "10s"}})
}

fn outlier_seed() -> Value {
    json!({"consecutive_failures": 3,
           "failure_rate": {"threshold": 0.25, "min_requests": 50, "window": "30s"},
           "base_ejection_time": "10s", "max_ejection_time": "2m", "max_ejected_percent": 20})
}

fn health_seed() -> Value {
    json!({"path": "/health/ready", "interval": "5s", "timeout": "500ms", "jitter": 0.1,
           "healthy_threshold": 2, "unhealthy_threshold": 3})
}

fn registration_seed() -> Value {
    json!({"heartbeat": "3s", "jitter": 0.1, "retry": {"initial": "200ms", "max_delay": "5s"}})
}

fn static_seed() -> Value {
    json!({"services": {
        "order-service": [
            {"addr": "10.0.0.1:8080", "zone": "eu-west-1a"},
            {"addr": "10.0.0.2:8080", "id": "order-2", "weight": 2, "metadata": {"version": "1.4.2"}}
        ],
        "user": [{"addr": "[::1]:9000"}]
    }})
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn balance_config_never_panics_and_round_trips(v in json_value(), at in any::<Index>(), with in json_value()) {
        let _ = serde_json::from_value::<BalanceConfig>(v);
        parses_and_round_trips::<BalanceConfig>(mutate(balance_seed(), at, with))?;
    }

    #[test]
    fn outlier_config_never_panics_and_round_trips(v in json_value(), at in any::<Index>(), with in json_value()) {
        let _ = serde_json::from_value::<OutlierConfig>(v);
        let doc = mutate(outlier_seed(), at, with);
        if let Ok(c) = serde_json::from_value::<OutlierConfig>(doc.clone()) {
            // Ejection times grow with each ejection; no count overflows.
            for n in [0, 1, 2, 31, 32, 64, u32::MAX] {
                prop_assert!(c.ejection_time(n) <= c.max_ejection_time().max(c.base_ejection_time()));
            }
        }
        parses_and_round_trips::<OutlierConfig>(doc)?;
    }

    #[test]
    fn health_config_never_panics_and_round_trips(v in json_value(), at in any::<Index>(), with in json_value()) {
        let _ = serde_json::from_value::<HealthCheckConfig>(v);
        parses_and_round_trips::<HealthCheckConfig>(mutate(health_seed(), at, with))?;
    }

    #[test]
    fn registration_config_never_panics_and_round_trips(v in json_value(), at in any::<Index>(), with in json_value()) {
        let _ = serde_json::from_value::<RegistrationConfig>(v);
        let doc = mutate(registration_seed(), at, with);
        if let Ok(c) = serde_json::from_value::<RegistrationConfig>(doc.clone()) {
            for ttl in [0, 1, 30, u64::MAX] {
                let _ = c.heartbeat_for(std::time::Duration::from_secs(ttl));
            }
        }
        parses_and_round_trips::<RegistrationConfig>(doc)?;
    }

    #[test]
    fn static_registry_never_panics(text in any::<String>(), at in any::<Index>(), with in json_value()) {
        let _ = StaticRegistry::from_json(&text);
        let doc = mutate(static_seed(), at, with);
        if let Ok(r) = StaticRegistry::from_json(&doc.to_string()) {
            prop_assert!(r.services().count() <= 2, "{}", doc);
        }
    }

    #[test]
    fn yaml_settings_never_panic(text in prop_oneof![
        any::<String>(),
        "([a-z_]{1,16}: ?([0-9]{1,20}(ms|s|m)?|[a-z_]{1,10}|\\{[a-z_: 0-9,.]{0,30}\\}|-?[0-9.e]{1,8})\n){1,6}",
    ]) {
        let _ = serde_saphyr::from_str::<BalanceConfig>(&text);
        let _ = serde_saphyr::from_str::<OutlierConfig>(&text);
        let _ = serde_saphyr::from_str::<HealthCheckConfig>(&text);
        let _ = serde_saphyr::from_str::<RegistrationConfig>(&text);
    }
}
