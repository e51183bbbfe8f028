//! Property tests of msp-core's parsers of outside input: `traceparent`
//! and `tracestate` (from callers), SPIFFE IDs and trust domains (from
//! certificates and policy files), service names, instance ids and
//! instances (from registries), backoff policies and authorization
//! policies (from configuration files), and the request paths the
//! policies match. None panics on any input, and each one with a
//! formatter reads back what it wrote.
//!
//! The seed is fixed, so a run is reproducible; `PROPTEST_CASES` raises the
//! number of cases.

use http::{HeaderMap, HeaderValue};
use msp_core::backoff::Backoff;
use msp_core::identity::{SpiffeId, TrustDomain};
use msp_core::observe::trace_context::{SpanId, TraceContext, TraceFlags, TraceId, TraceState};
use msp_core::{Instance, InstanceId, ServiceName};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use serde_json::{Value, json};
use std::time::Duration;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(15),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn regex(pattern: &str) -> impl Strategy<Value = String> + use<> {
    proptest::string::string_regex(pattern).expect("a valid regex")
}

/// Text shaped like a `traceparent`: the right length and dashes most of
/// the time, with hex of both cases, odd versions and trailing fields.
fn traceparent_like() -> impl Strategy<Value = String> {
    let field = |n: usize| {
        prop_oneof![
            prop::collection::vec(any::<u8>(), n).prop_map(|b| hex(&b)),
            regex(&format!("[0-9a-fA-F]{{{}}}", n * 2)),
            regex(&format!("[0-9a-z-]{{{},{}}}", n * 2 - 1, n * 2 + 1)),
        ]
    };
    let tail = prop_oneof![
        Just(String::new()),
        "-[ -~]{0,12}",
        "[ -~]{1,4}",
        Just(" \t".to_owned()),
    ];
    (field(1), field(16), field(8), field(1), tail)
        .prop_map(|(v, t, s, f, tail)| format!("{v}-{t}-{s}-{f}{tail}"))
}

/// Text shaped like a `tracestate` list: keys with and without tenants,
/// values of any printable characters, odd separators and blanks.
fn tracestate_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        "[a-z][a-z0-9_*/-]{0,20}",
        "[a-z0-9][a-z0-9_*/-]{0,10}@[a-z][a-z0-9_*/-]{0,8}",
        "[ -~]{0,6}",
    ];
    let value = prop_oneof!["[!-+\\--<>-~]{1,20}", "[ -~]{0,10}", "[a-zA-Z0-9]{200,260}"];
    let member = prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k}={v}")),
        Just(String::new()),
        Just(" \t ".to_owned()),
    ];
    (
        prop::collection::vec(member, 0..40),
        prop_oneof![Just(","), Just(" , "), Just(",,"), Just(";")],
    )
        .prop_map(|(members, sep)| members.join(sep))
}

/// Text shaped like a SPIFFE ID: the scheme (mostly), a trust domain and
/// path segments of valid and invalid characters.
fn spiffe_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        4 => Just("spiffe://"),
        1 => Just("SPIFFE://"),
        1 => Just("spiffe:/"),
        1 => Just(""),
    ];
    let domain = prop_oneof!["[a-z0-9.-]{0,20}", "[ -~]{0,8}", "[a-z0-9é:]{1,10}"];
    let segment = prop_oneof![
        "[a-zA-Z0-9._-]{1,12}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(String::new()),
        "[ -~]{1,4}",
    ];
    (scheme, domain, prop::collection::vec(segment, 0..5)).prop_map(|(s, d, p)| {
        p.iter()
            .fold(format!("{s}{d}"), |id, seg| format!("{id}/{seg}"))
    })
}

/// A JSON value a configuration file might hold where a setting goes.
fn json_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{1,25} ?(ns|us|ms|s|m|min|h|d|w|y)".prop_map(Value::from),
        "(none|full|equal|decorrelated|ALLOW|DENY|AUDIT|GET|POST)".prop_map(Value::from),
        spiffe_like().prop_map(Value::from),
        "(/[a-z*{}.%0-9]{0,8}){0,4}".prop_map(Value::from),
        "[0-9.:/a-f]{1,20}".prop_map(Value::from),
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn traceparent_parsing_never_panics(s in any::<String>(), like in traceparent_like()) {
        let _ = TraceContext::parse_traceparent(&s);
        if let Ok(ctx) = TraceContext::parse_traceparent(&like) {
            // What parses is re-formatted canonically (version 00, lowercase).
            let again = TraceContext::parse_traceparent(&ctx.to_string());
            prop_assert_eq!(again.ok().map(|c| c.to_string()), Some(ctx.to_string()), "{}", like);
        }
    }

    #[test]
    fn traceparent_round_trips(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
        let (Some(t), Some(s)) = (TraceId::from_bytes(trace), SpanId::from_bytes(span)) else {
            return Ok(()); // all-zero ids are not ids
        };
        let ctx = TraceContext::new(t, s, TraceFlags::new(flags));
        let text = ctx.to_string();
        // Reserved flag bits are cleared (a version 00 parent cannot set them).
        let flags = TraceFlags::new(flags).bits();
        prop_assert_eq!(&text, &format!("00-{}-{}-{:02x}", hex(&trace), hex(&span), flags));
        let back = TraceContext::parse_traceparent(&text).expect("formatted traceparent parses");
        prop_assert_eq!(back.trace_id(), t);
        prop_assert_eq!(back.span_id(), s);
        prop_assert_eq!(back.flags().bits(), flags);
        // Upper-case hex is refused (the specification's lowercase only).
        let upper = text.to_uppercase();
        if upper != text {
            prop_assert!(TraceContext::parse_traceparent(&upper).is_err(), "{}", upper);
        }
    }

    #[test]
    fn tracestate_parsing_never_panics_and_is_idempotent(s in any::<String>(), like in tracestate_like()) {
        let _ = TraceState::parse(&s);
        if let Some(state) = TraceState::parse(&like) {
            prop_assert!(state.as_str().len() <= TraceState::MAX_LEN, "{}", like);
            let again = TraceState::parse(state.as_str());
            prop_assert_eq!(again.as_ref(), Some(&state), "{}", like);
            prop_assert_eq!(state.iter().count(), state.len());
            for (k, v) in state.iter() {
                prop_assert_eq!(state.get(k), Some(v));
            }
        }
    }

    #[test]
    fn tracestate_with_member_round_trips(like in tracestate_like(), key in "[a-z][a-z0-9_*/-]{0,20}", value in "[!-+\\--<>-~]{0,20}") {
        let state = TraceState::parse(&like).unwrap_or_default();
        if let Ok(next) = state.with_member(&key, &value) {
            prop_assert_eq!(next.get(&key), Some(value.as_str()));
            let reparsed = TraceState::parse(next.as_str());
            prop_assert_eq!(reparsed.as_ref(), Some(&next));
            let without = next.without_member(&key);
            prop_assert_eq!(without.get(&key), None);
        }
    }

    #[test]
    fn trace_headers_never_panic(
        parents in prop::collection::vec(prop_oneof![traceparent_like(), any::<String>()], 0..3),
        states in prop::collection::vec(prop_oneof![tracestate_like(), any::<String>()], 0..4),
        raw in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut headers = HeaderMap::new();
        for p in &parents {
            if let Ok(v) = HeaderValue::from_str(p) {
                headers.append("traceparent", v);
            }
        }
        for s in &states {
            if let Ok(v) = HeaderValue::from_str(s) {
                headers.append("tracestate", v);
            }
        }
        if let Ok(v) = HeaderValue::from_bytes(&raw) {
            headers.append("tracestate", v);
        }
        if let Some(ctx) = TraceContext::from_headers(&headers) {
            let mut out = HeaderMap::new();
            ctx.inject(&mut out);
            let back = TraceContext::from_headers(&out).expect("injected context extracts");
            prop_assert_eq!(back.to_string(), ctx.to_string());
            prop_assert_eq!(back.state(), ctx.state());
        }
    }

    #[test]
    fn spiffe_ids_never_panic_and_round_trip(s in any::<String>(), like in spiffe_like()) {
        let _ = SpiffeId::new(&s);
        let _ = TrustDomain::new(&s);
        if let Ok(id) = SpiffeId::new(&like) {
            prop_assert_eq!(id.to_string(), like.clone());
            prop_assert_eq!(id.to_string().parse::<SpiffeId>().ok(), Some(id.clone()));
            let td = id.trust_domain();
            prop_assert!(id.is_member_of(&td));
            prop_assert_eq!(td.to_string().parse::<TrustDomain>().ok(), Some(td.clone()));
            prop_assert_eq!(SpiffeId::from_parts(&td, id.path()).ok(), Some(id.clone()));
            let json = serde_json::to_string(&id).expect("serializes");
            prop_assert_eq!(serde_json::from_str::<SpiffeId>(&json).ok(), Some(id));
        }
        if let Ok(td) = like.trim_start_matches("spiffe://").parse::<TrustDomain>() {
            prop_assert_eq!(td.to_string().parse::<TrustDomain>().ok(), Some(td.clone()));
            prop_assert_eq!(SpiffeId::new(td.id_string()).map(|id| id.trust_domain()).ok(), Some(td.clone()));
        }
    }

    #[test]
    fn spiffe_from_parts_never_panics(td in "[a-z0-9.-]{1,12}", path in any::<String>()) {
        if let Ok(td) = TrustDomain::new(&td)
            && let Ok(id) = SpiffeId::from_parts(&td, &path)
        {
            prop_assert!(id.is_member_of(&td));
        }
    }

    #[test]
    fn names_and_instances_never_panic_and_round_trip(
        name in prop_oneof!["[a-z0-9][a-z0-9._-]{0,30}", any::<String>()],
        addr in prop_oneof![
            "(127\\.0\\.0\\.1|10\\.[0-9]{1,3}\\.0\\.1|\\[::1\\]|localhost|[0-9.]{1,15}):[0-9]{1,6}",
            any::<String>(),
        ],
    ) {
        if let Ok(n) = ServiceName::new(&name) {
            prop_assert_eq!(n.to_string().parse::<ServiceName>().ok(), Some(n.clone()));
        }
        if let Ok(id) = InstanceId::new(&name) {
            prop_assert_eq!(id.to_string().parse::<InstanceId>().ok(), Some(id.clone()));
        }
        if let Ok(i) = Instance::parse(&name, &addr) {
            let json = serde_json::to_string(&i).expect("serializes");
            prop_assert_eq!(serde_json::from_str::<Instance>(&json).ok(), Some(i.clone()), "{}", json);
        }
    }

    #[test]
    fn instance_json_never_panics(v in json_value(), at in any::<Index>(), seed_field in json_value()) {
        let _ = serde_json::from_value::<Instance>(v);
        let seed = mutate(json!({"id": "order-1", "service": "order", "addr": "10.0.0.1:8080",
                                 "weight": 1, "zone": "a", "metadata": {"v": "2"}}), at, seed_field);
        if let Ok(i) = serde_json::from_value::<Instance>(seed) {
            let json = serde_json::to_value(&i).expect("serializes");
            prop_assert_eq!(serde_json::from_value::<Instance>(json).ok(), Some(i));
        }
    }

    #[test]
    fn backoff_config_never_panics_and_its_delays_stay_bounded(
        v in json_value(),
        at in any::<Index>(),
        with in json_value(),
        seed in any::<u64>(),
    ) {
        let _ = serde_json::from_value::<Backoff>(v);
        let doc = mutate(json!({"initial": "100ms", "multiplier": 2.0, "max_delay": "10s",
                                "max_elapsed": "1m", "max_attempts": 5, "jitter": "full"}), at, with);
        if let Ok(b) = serde_json::from_value::<Backoff>(doc) {
            let back = serde_json::to_value(&b).expect("serializes");
            prop_assert_eq!(serde_json::from_value::<Backoff>(back).ok(), Some(b.clone()));
            for d in b.iter_seeded(seed).take(64) {
                prop_assert!(d <= b.max_delay().max(b.initial()), "{:?} > cap of {:?}", d, b);
            }
        }
    }

    #[test]
    fn backoff_builder_never_panics_at_the_extremes(
        initial in prop_oneof![Just(Duration::MAX), Just(Duration::from_nanos(1)), any::<u64>().prop_map(Duration::from_nanos)],
        max_delay in prop_oneof![Just(Duration::MAX), any::<u64>().prop_map(Duration::from_secs)],
        multiplier in prop_oneof![Just(f64::MAX), Just(f64::INFINITY), Just(f64::NAN), 1.0f64..1e6],
        seed in any::<u64>(),
    ) {
        if let Ok(b) = Backoff::builder().initial(initial).max_delay(max_delay).multiplier(multiplier).build() {
            for d in b.iter_seeded(seed).take(80) {
                prop_assert!(d <= max_delay);
            }
        }
    }
}

#[cfg(feature = "authz")]
mod authz {
    use super::*;
    use msp_core::authz::AuthorizationPolicies;

    fn seed() -> Value {
        json!({"policies": [
            {"name": "payments", "action": "ALLOW", "rules": [{
                "name": "order",
                "from": [{"principals": ["spiffe://shop/order-service", "spiffe://shop/ns/*"],
                          "not_trust_domains": ["evil"], "ip_blocks": ["10.0.0.0/8"]}],
                "to": [{"methods": ["POST"], "paths": ["/payments/*", "/orders/{*}/items", "*.json"],
                        "hosts": ["*.shop.example"], "ports": [8443]}],
                "when": [{"header": "x-tenant", "values": ["a*", "*b", "exact"]}]
            }]},
            {"name": "lan", "action": "DENY", "rules": [{"from": [{"not_ip_blocks": ["192.168.0.0/16"]}]}]}
        ]})
    }

    fn request(method: &str, uri: &str, host: &str) -> Option<http::Request<()>> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .header("x-tenant", "ab")
            .body(())
            .ok()
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn policies_never_panic_and_round_trip(v in json_value(), at in any::<Index>(), with in json_value()) {
            let _ = serde_json::from_value::<AuthorizationPolicies>(v);
            let doc = mutate(seed(), at, with);
            if let Ok(p) = serde_json::from_value::<AuthorizationPolicies>(doc) {
                let json = serde_json::to_value(&p).expect("serializes");
                prop_assert_eq!(serde_json::from_value::<AuthorizationPolicies>(json).ok(), Some(p));
            }
        }

        #[test]
        fn deciding_on_any_path_never_panics(
            path in prop_oneof![
                "(/([a-z]{1,6}|\\.|\\.\\.|%2[eEfF]|%[0-9a-fA-F]{2}|%|%[g-z]{2}|)){0,8}",
                "/[!-~]{0,40}",
            ],
            query in prop_oneof![Just(String::new()), "\\?[!-~]{0,20}"],
            method in "(GET|POST|[A-Z]{1,8})",
            host in prop_oneof!["[a-z.]{1,20}(:[0-9]{1,5})?", "[!-~]{0,20}"],
            ip in any::<Option<[u8; 4]>>(),
        ) {
            let policies: AuthorizationPolicies = serde_json::from_value(seed()).expect("valid seed");
            if let Some(req) = request(&method, &format!("{path}{query}"), &host) {
                let peer = ip.map(std::net::IpAddr::from);
                let _ = policies.decide(&req, peer);
            }
        }
    }
}
