//! Property tests of msp-config's parsers of outside input: environment
//! variable names and values, `--set` keys and command-line arguments,
//! `${VAR}` interpolation, `{cipher}` values and cipher keys, and feature
//! flags. None panics on any input; environment keys, `--set` keys and
//! interpolation read back what was written, and encryption round-trips.
//!
//! Only the public API is used (`Loader`, `Cipher`, `FeatureFlags`). The
//! seed is fixed, so a run is reproducible; `PROPTEST_CASES` raises the
//! number of cases.

use msp_config::secret::{Cipher, CipherKey, Redactor};
use msp_config::{FeatureFlag, FeatureFlags, Loader};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::Value;
use std::collections::HashMap;

fn config() -> ProptestConfig {
    ProptestConfig {
        // Each case builds and loads a configuration: fewer than the pure
        // parsers get, still hundreds.
        cases: 256,
        rng_seed: RngSeed::Fixed(15),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text for names and values: mostly near the grammar (underscores,
/// dots, brackets, `$`, braces), sometimes anything.
fn keyish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.\\[\\]{}$:-]{0,24}",
        "(APP|APP_|APP__|app__)[A-Za-z0-9_.\\[\\]-]{0,20}",
        any::<String>(),
    ]
}

/// A key segment the environment can reach: lower case, single
/// underscores inside.
fn segment() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,5}(_[a-z0-9]{1,4})?"
}

fn loader(env: HashMap<String, String>) -> Loader {
    Loader::new("app").no_files().env_map(env)
}

/// The value at `path` as text (the loader may read `"7"` as a number).
fn text_at(v: &Value, path: &[String]) -> Option<String> {
    let leaf = path.iter().try_fold(v, |v, k| v.get(k.as_str()))?;
    Some(match leaf {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// One piece of an interpolated value and what it expands to.
fn piece() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-zA-Z0-9 ./:-]{1,8}".prop_map(|s| (s.clone(), s)),
        (0usize..3).prop_map(|i| (format!("${{VAR{i}}}"), format!("value{i}"))),
        ("[A-Z]{1,6}", "[a-z0-9 ./]{0,8}").prop_map(|(n, d)| (format!("${{UNSET_{n}:-{d}}}"), d)),
        (0usize..3, "[a-z0-9]{0,6}")
            .prop_map(|(i, d)| (format!("${{VAR{i}:-{d}}}"), format!("value{i}"))),
        Just(("$${".to_owned(), "${".to_owned())),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn env_set_and_args_never_panic(
        env in prop::collection::hash_map(keyish(), "[ -~]{0,16}", 0..6),
        sets in prop::collection::vec((keyish(), "[ -~]{0,16}"), 0..4),
        args in prop::collection::vec(prop_oneof![
            Just("--set".to_owned()), Just("--profile".to_owned()), "--set=[ -~]{0,16}", keyish()
        ], 0..6),
    ) {
        let mut l = loader(env);
        for (k, v) in sets {
            l = l.set(k, v);
        }
        if let Ok(l) = l.args(&args) {
            let _ = l.active_profiles();
            let _ = l.load_sync::<Value>();
        }
    }

    #[test]
    fn env_keys_round_trip(path in prop::collection::vec(segment(), 1..4), value in "v[a-zA-Z0-9 ./-]{0,20}") {
        let name = format!("APP__{}", path.join("__").to_uppercase());
        let loaded: Value = loader(HashMap::from([(name.clone(), value.clone())]))
            .load_sync()
            .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        prop_assert_eq!(text_at(&loaded, &path), Some(value), "{} -> {}", name, loaded);
    }

    #[test]
    fn set_keys_round_trip(path in prop::collection::vec("[a-zA-Z][a-zA-Z0-9_-]{0,8}", 1..4), value in "v[ -~]{0,20}") {
        prop_assume!(!value.contains('$'));
        let key = path.join(".");
        let via_args = loader(HashMap::new()).args(["--set".to_owned(), format!("{key}={value}")]);
        let loaded: Value = via_args
            .and_then(|l| l.load_sync())
            .map_err(|e| TestCaseError::fail(format!("{key}: {e}")))?;
        prop_assert_eq!(text_at(&loaded, &path), Some(value), "{} -> {}", key, loaded);
    }

    #[test]
    fn interpolation_expands_what_it_reads(pieces in prop::collection::vec(piece(), 0..8)) {
        let (template, expected): (String, String) = pieces.into_iter().fold(
            ("x".to_owned(), "x".to_owned()),
            |(t, e), (pt, pe)| (t + &pt, e + &pe),
        );
        let env = HashMap::from([
            ("VAR0".to_owned(), "value0".to_owned()),
            ("VAR1".to_owned(), "value1".to_owned()),
            ("VAR2".to_owned(), "value2".to_owned()),
        ]);
        let loaded: Value = loader(env)
            .set("k", template.clone())
            .load_sync()
            .map_err(|e| TestCaseError::fail(format!("{template}: {e}")))?;
        prop_assert_eq!(text_at(&loaded, &["k".to_owned()]), Some(expected), "{}", template);
    }

    #[test]
    fn interpolation_of_any_text_never_panics(value in prop_oneof![
        "[$\\{\\}:a-zA-Z_0-9 -]{0,30}",
        "(\\$\\{[A-Z_]{0,6}(:-[^}]{0,6})?\\}?|\\$\\$\\{|[a-z]{0,3}){0,6}",
        any::<String>(),
    ]) {
        let env = HashMap::from([("A".to_owned(), "${A}".to_owned()), ("PASSWORD".to_owned(), "p".to_owned())]);
        let _ = loader(env).set("k", value).load_sync::<Value>();
    }

    #[test]
    fn cipher_values_round_trip_and_garbage_is_an_error(
        key in any::<[u8; 32]>(),
        plain in any::<String>(),
        garbage in prop_oneof![
            any::<String>(),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(b)
            }),
            "[A-Za-z0-9+/=]{0,60}",
        ],
    ) {
        let cipher = Cipher::new(key);
        let sealed = cipher.encrypt(&plain);
        prop_assert_eq!(cipher.decrypt(&sealed).ok(), Some(plain.clone()));
        let forged = format!("{{cipher}}{garbage}");
        prop_assert!(cipher.decrypt(&forged).is_err(), "{}", forged);
        let _ = cipher.decrypt(&garbage);
        // Through the loader: a wrong or forged value is an error.
        let loaded = loader(HashMap::new())
            .cipher_key(CipherKey::Bytes(key))
            .set("password", forged)
            .load_sync::<Value>();
        prop_assert!(loaded.is_err());
        let loaded: Value = loader(HashMap::new())
            .cipher_key(CipherKey::Bytes(key))
            .set("password", sealed)
            .interpolation(false)
            .load_sync()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(text_at(&loaded, &["password".to_owned()]), Some(plain));
    }

    #[test]
    fn cipher_keys_never_panic(text in prop_oneof![
        any::<String>(),
        "[0-9a-fA-F]{60,68}",
        "[ \t]{0,2}[A-Za-z0-9+/]{42,44}={0,2}[ \n]{0,2}",
    ]) {
        let _ = Cipher::from_text(&text);
        let _ = Redactor::default().is_secret(&text);
        let _ = loader(HashMap::from([("KEY".to_owned(), text)]))
            .cipher_key(CipherKey::Env("KEY".to_owned()))
            .set("a", "{cipher}AAAA")
            .load_sync::<Value>();
            }

    #[test]
    fn feature_flags_never_panic(
        doc in prop::collection::hash_map("[a-z-]{1,8}", (any::<bool>(), any::<f64>(), any::<Option<String>>()), 0..4),
        key in any::<String>(),
        salt in any::<String>(),
    ) {
        let flags = FeatureFlags(doc.into_iter().map(|(name, (enabled, rollout_percent, salt))| {
            (name, FeatureFlag { enabled, rollout_percent, salt, ..FeatureFlag::default() })
        }).collect());
        for name in flags.0.keys() {
            let _ = flags.is_enabled(name, &key);
        }
        prop_assert!(msp_config::flags::bucket(&salt, &key) < 10_000);
        // Written out and read back (a non-finite percent is written as
        // null, which reads back as an error, not a panic).
        let json = serde_json::to_string(&flags).expect("serializes");
        // (serde_json reads floats back to the nearest, not always the
        // same, f64: the percent is compared loosely.)
        if let Ok(back) = serde_json::from_str::<FeatureFlags>(&json) {
            for (name, flag) in &flags.0 {
                let read = back.get(name).expect("every flag reads back");
                prop_assert_eq!((read.enabled, &read.salt), (flag.enabled, &flag.salt));
                let (a, b) = (read.rollout_percent, flag.rollout_percent);
                prop_assert!((a - b).abs() <= b.abs() * 1e-15, "{} vs {}", a, b);
            }
        }
    }
}
