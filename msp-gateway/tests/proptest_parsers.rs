//! Property tests of msp-gateway's parsers of outside input: request paths
//! (normalisation, from every caller), route path patterns and rewrite
//! templates, and the whole gateway YAML (arbitrary text, the seed's
//! `examples/gateway.yaml` and a file using every route field, mutated line
//! by line and value by value). None panics on any input; a loaded
//! configuration builds its route table, serializes and reads back equal,
//! and a route matches the paths its pattern describes.
//!
//! The seed is fixed, so a run is reproducible; `PROPTEST_CASES` raises the
//! number of cases.

use http::{HeaderMap, Method};
use msp_gateway::config::GatewayConfig;
use msp_gateway::route::{RouteMatch, RouteTable, normalize_path};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use serde_json::Value;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(15),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const SEED: &str = include_str!("../examples/gateway.yaml");

/// A configuration using every route field and the expanded forms.
const FULL: &str = r#"
listen: 0.0.0.0:8080
admin: { listen: 127.0.0.1:9901 }
trusted_proxies: [10.0.0.0/8, "::1/128"]
limits: { max_body_bytes: 1048576 }
registry: static
services:
  users-v1:
    instances: ["10.0.0.1:8080", "10.0.0.2:8080"]
    balancer: round_robin
    connect_timeout: 250ms
    pool: { idle_timeout: 30s, max_idle_per_host: 8 }
    health_check: { path: /health, interval: 5s }
  users-v2: { instances: ["10.0.0.3:8080"], h2c: true }
  shadow: { instances: ["10.0.0.9:8080"] }
routes:
  - name: users
    path: /api/users/{id}
    host: api.example.com
    headers: { x-canary: "1" }
    query: { version: "2" }
    split:
      - { service: users-v1, weight: 90 }
      - { service: users-v2, weight: 10 }
    rewrite: /v2/users/{id}
    preserve_host: true
    timeout: 2s
    retry: { max_attempts: 2 }
    breaker: { failure_rate: 25.0, open_duration: 10s }
    bulkhead: { max_concurrent: 20, max_queue: 5, max_wait: 100ms }
    mirror: { service: shadow, percent: 5 }
    rate_limit: 50/s burst 100
    rate_limit_by: ip
    cache_ttl: 60
  - path: /static/*
    service: users-v1
    strip_prefix: true
    rate_limit: { limit: 10, period: 1s }
    rate_limit_by: { header: x-tenant }
  - path: /old/{*rest}
    service: users-v1
    strip_prefix: /old
    rewrite: /new/{*rest}
"#;

/// A value a line of YAML might hold instead of its own.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22}",
        "-?[0-9]{1,4}\\.[0-9]{0,3}",
        "[0-9]{1,20} ?(ns|ms|s|m|h|d|y)",
        "[0-9]{1,12}/(s|min|hour|day)( burst [0-9]{1,12})?",
        "(true|false|null|~|yes|\\[\\]|\\{\\}|-|\\||>|&a|\\*a|!!str|'|\")",
        "/[a-z{}*/.%0-9]{0,16}",
        "[0-9.:/\\[\\]a-f]{1,24}",
        "[ -~]{0,20}",
        any::<String>(),
    ]
}

/// `src` changed at one line (`at`): removed, doubled, its value replaced,
/// indented differently, a new line put before it, or cut off there.
fn mutate_lines(src: &str, at: Index, op: u8, with: &str) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_owned).collect();
    let i = at.index(lines.len());
    match op % 6 {
        0 => {
            lines.remove(i);
        }
        1 => lines.insert(i, lines[i].clone()),
        2 => {
            let line = &lines[i];
            lines[i] = match line.find(": ") {
                Some(colon) => format!("{}: {with}", &line[..colon]),
                None => format!("{line} {with}"),
            };
        }
        3 => lines[i] = format!("  {}", lines[i]),
        4 => lines.insert(i, with.to_owned()),
        _ => {
            let line = &lines[i];
            let cut = with.len() % (line.len() + 1);
            let cut = (0..=cut)
                .rev()
                .find(|&c| line.is_char_boundary(c))
                .unwrap_or(0);
            lines[i] = line[..cut].to_owned();
            lines.truncate(i + 1);
        }
    }
    lines.join("\n")
}

/// What a settings file holds where a value goes.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        scalar().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,14}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `seed` with the value at place `at` (in document order) replaced.
fn mutate_tree(mut seed: Value, at: Index, with: Value) -> Value {
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

/// Loads `yaml`; when it loads, builds its route table, looks up a few
/// paths and checks the configuration reads back from what it writes.
fn load(yaml: &str, probe: &str) -> Result<(), TestCaseError> {
    let Ok(config) = GatewayConfig::from_yaml(yaml, "mutated.yaml") else {
        return Ok(());
    };
    let json = serde_json::to_value(&config).expect("serializes");
    let back = serde_json::from_value::<GatewayConfig>(json.clone());
    prop_assert_eq!(back.as_ref().ok(), Some(&config), "{} -> {}", yaml, json);
    if let Ok(table) = RouteTable::new(&config) {
        for path in ["/", "/api/users/42", "/old/a/b", "/static/", probe] {
            find(&table, path);
        }
    }
    Ok(())
}

/// Looks `path` up and, when it matches, builds the upstream path.
fn find(table: &RouteTable, path: &str) -> Option<usize> {
    let headers = HeaderMap::new();
    match table.find(
        &Method::GET,
        Some("api.example.com"),
        path,
        Some("version=2"),
        &headers,
    ) {
        RouteMatch::Found(m) => {
            let _ = m
                .route
                .upstream_path_and_query(path, Some("version=2"), &m.params);
            Some(m.index)
        }
        _ => None,
    }
}

/// A route pattern: segments (static, `{param}`, odd text) and an end (none,
/// `/`, `/*`, `/{*rest}`), with the concrete path it should match.
fn pattern() -> impl Strategy<Value = (String, String, Vec<(String, String)>)> {
    let segment = prop_oneof![
        3 => "[a-z0-9._~-]{1,6}".prop_map(|s| (s.clone(), s, None)),
        2 => ("[a-z][a-z0-9_]{0,5}", "[a-z0-9]{1,6}")
            .prop_map(|(n, v)| (format!("{{{n}}}"), v.clone(), Some((n, v)))),
        1 => "[ -~]{1,4}".prop_map(|s| (s.clone(), s, None)),
    ];
    let end = prop_oneof![
        Just(("", "", None)),
        Just(("/", "/", None)),
        Just(("/*", "/x/y", None)),
        Just(("/{*rest}", "/x/y", Some("rest"))),
    ];
    (prop::collection::vec(segment, 0..4), end).prop_map(|(segs, (pend, cend, rest))| {
        let mut pattern = String::new();
        let mut path = String::new();
        let mut params = Vec::new();
        for (p, c, param) in segs {
            pattern.push('/');
            pattern.push_str(&p);
            path.push('/');
            path.push_str(&c);
            params.extend(param);
        }
        pattern.push_str(pend);
        path.push_str(cend);
        if let Some(name) = rest {
            params.push((name.to_owned(), "x/y".to_owned()));
        }
        if pattern.is_empty() {
            pattern.push('/');
            path.push('/');
        }
        (pattern, path, params)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalize_path_never_panics_and_is_idempotent(raw in prop_oneof![
        any::<String>(),
        "(/([a-zA-Z0-9]{0,4}|\\.|\\.\\.|%[0-9a-fA-F]{2}|%[2][eEfF]|%5[cC]|%|%.|%[c-f][0-9a-f]%[89ab][0-9a-f])){0,8}/?",
    ]) {
        if let Ok(p) = normalize_path(&raw) {
            prop_assert!(p.starts_with('/'), "{:?} -> {:?}", raw, p);
            prop_assert!(!p.contains("//"), "{:?} -> {:?}", raw, p);
            prop_assert!(p.split('/').all(|s| s != "." && s != ".."), "{:?} -> {:?}", raw, p);
            let again = normalize_path(&p).map(|q| q.into_owned());
            prop_assert_eq!(again.as_deref(), Ok(&*p), "{:?}", raw);
        }
    }

    #[test]
    fn any_yaml_text_is_an_error_or_a_config(text in prop_oneof![
        any::<String>(),
        "([a-z_]{1,12}:( [ -~]{0,16})?\n( {2,4}- ?[ -~]{0,16}\n){0,2}){1,5}",
    ], probe in "/[ -~]{0,20}") {
        load(&text, &probe)?;
    }

    #[test]
    fn seed_yaml_mutated_line_by_line_never_panics(
        full in any::<bool>(), at in any::<Index>(), op in any::<u8>(), with in scalar(), probe in "/[ -~]{0,20}",
    ) {
        let yaml = mutate_lines(if full { FULL } else { SEED }, at, op, &with);
        load(&yaml, &probe)?;
    }

    #[test]
    fn seed_yaml_mutated_value_by_value_never_panics(
        full in any::<bool>(), at in any::<Index>(), with in json_value(), probe in "/[ -~]{0,20}",
    ) {
        let tree: Value = serde_saphyr::from_str(if full { FULL } else { SEED }).expect("seed is YAML");
        // JSON is YAML: the mutated tree goes back as a JSON document.
        let yaml = serde_json::to_string(&mutate_tree(tree, at, with)).expect("JSON");
        load(&yaml, &probe)?;
    }

    #[test]
    fn route_patterns_load_or_are_refused_and_match_their_paths(
        (pattern, path, params) in pattern(),
        rewrite in prop_oneof![Just(None), "(/([a-z]{1,4}|\\{[a-z]{1,4}\\}|\\*|\\{\\*rest\\}|[ -~]{1,3})){0,3}".prop_map(Some)],
        strip in prop_oneof![Just(None), Just(Some("true".to_owned())), "/[a-z{}*]{0,6}".prop_map(Some)],
        probe in "/[ -~]{0,20}",
    ) {
        let mut route = format!("  - path: {}\n    service: a\n", serde_json::to_string(&pattern).expect("JSON"));
        if let Some(r) = &rewrite {
            route += &format!("    rewrite: {}\n", serde_json::to_string(r).expect("JSON"));
        }
        if let Some(s) = &strip {
            route += &format!("    strip_prefix: {}\n", serde_json::to_string(s).expect("JSON").replace("\"true\"", "true"));
        }
        let yaml = format!("services:\n  a: {{ instances: [\"127.0.0.1:1\"] }}\nroutes:\n{route}");
        let Ok(config) = GatewayConfig::from_yaml(&yaml, "route.yaml") else {
            return Ok(());
        };
        let table = RouteTable::new(&config).map_err(|e| TestCaseError::fail(format!("{yaml}: {e}")))?;
        find(&table, &probe);
        let headers = HeaderMap::new();
        match table.find(&Method::GET, None, &path, None, &headers) {
            RouteMatch::Found(m) => {
                for (name, value) in &params {
                    prop_assert_eq!(m.params.get(name), Some(value.as_str()), "{} on {}", pattern, path);
                }
                let _ = m.route.upstream_path_and_query(&path, None, &m.params);
            }
            other => {
                return Err(TestCaseError::fail(format!("{pattern} did not match {path}: {other:?}")));
            }
        }
    }
}
