//! W3C Trace Context conformance, case by case from the specification's text
//! (w3.org/TR/trace-context, and the `tracestate` key grammar of the current
//! editors' draft). The official test suite runs against
//! `examples/w3c_test_service.rs` (see the crate README).

use http::{HeaderMap, HeaderValue};
use msp_core::observe::trace_context::{
    ParseError, TraceContext, TraceFlags, TraceState, current, spawn_in_context,
};
use msp_core::observe::{InCurrentTrace, TraceContextLayer};
use std::convert::Infallible;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn tp(version: &str, trace: &str, parent: &str, flags: &str) -> String {
    format!("{version}-{trace}-{parent}-{flags}")
}

fn parse(value: &str) -> Result<TraceContext, ParseError> {
    TraceContext::parse_traceparent(value)
}

fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(*name, HeaderValue::from_str(value).expect("visible ASCII"));
    }
    map
}

fn state(value: &str) -> String {
    TraceState::parse(value)
        .unwrap_or_else(|| panic!("{value:?} should parse"))
        .as_str()
        .to_owned()
}

// ------------------------------------------------------------------ traceparent

#[test]
fn version_00_round_trips_and_formats_lowercase() {
    let value = tp("00", TRACE, PARENT, "01");
    let ctx = parse(&value).expect("valid");
    assert_eq!(ctx.to_string(), value);
    assert_eq!(ctx.trace_id().to_string(), TRACE);
    assert_eq!(ctx.span_id().to_string(), PARENT);
    assert!(ctx.flags().is_sampled());
    assert!(
        !parse(&tp("00", TRACE, PARENT, "00"))
            .expect("valid")
            .flags()
            .is_sampled()
    );
}

#[test]
fn hex_must_be_lowercase_in_every_field() {
    for bad in [
        tp("0A", TRACE, PARENT, "01"),
        tp("00", &TRACE.to_uppercase(), PARENT, "01"),
        tp("00", TRACE, "00F067AA0BA902B7", "01"),
        tp("00", TRACE, PARENT, "0A"),
    ] {
        assert_eq!(parse(&bad).err(), Some(ParseError::NotHex), "{bad}");
    }
}

#[test]
fn version_ff_is_invalid() {
    assert_eq!(
        parse(&tp("ff", TRACE, PARENT, "01")).err(),
        Some(ParseError::InvalidVersion)
    );
}

#[test]
fn malformed_version_field_is_invalid() {
    for version in [".0", "0.", "0", "000", "0000", "g0"] {
        assert!(
            parse(&tp(version, TRACE, PARENT, "01")).is_err(),
            "{version}"
        );
    }
}

#[test]
fn all_zero_ids_are_invalid() {
    assert_eq!(
        parse(&tp("00", &"0".repeat(32), PARENT, "01")).err(),
        Some(ParseError::ZeroTraceId)
    );
    assert_eq!(
        parse(&tp("00", TRACE, &"0".repeat(16), "01")).err(),
        Some(ParseError::ZeroParentId)
    );
}

#[test]
fn wrong_field_lengths_and_characters_are_invalid() {
    let bad = [
        tp("00", &TRACE[..31], PARENT, "01"),
        tp("00", &format!("{TRACE}1"), PARENT, "01"),
        tp("00", TRACE, &PARENT[..15], "01"),
        tp("00", TRACE, &format!("{PARENT}1"), "01"),
        tp("00", TRACE, PARENT, "1"),
        tp("00", TRACE, PARENT, "001"),
        tp("00", TRACE, PARENT, ".0"),
        tp("00", TRACE, PARENT, "0."),
        tp("00", &format!(".{}", &TRACE[1..]), PARENT, "01"),
        tp("00", TRACE, &format!("{}.", &PARENT[..15]), "01"),
        format!("00_{TRACE}-{PARENT}-01"),
        format!("00-{TRACE}_{PARENT}-01"),
        format!("00-{TRACE}-{PARENT}_01"),
        String::new(),
    ];
    for b in bad {
        assert!(parse(&b).is_err(), "{b:?} accepted");
    }
}

#[test]
fn version_00_allows_nothing_after_the_flags() {
    for extra in [".", "-", "-what-the-future-will-be-like", "0"] {
        let value = format!("{}{extra}", tp("00", TRACE, PARENT, "01"));
        assert!(parse(&value).is_err(), "{value}");
    }
}

#[test]
fn future_versions_are_parsed_by_the_version_00_prefix() {
    // "If a higher version is detected, the implementation SHOULD try to
    // parse it": the 55-character prefix, then the end or a dash.
    for value in [
        tp("cc", TRACE, PARENT, "01"),
        format!(
            "{}-what-the-future-will-be-like",
            tp("cc", TRACE, PARENT, "01")
        ),
    ] {
        let ctx = parse(&value).expect("future version accepted");
        assert_eq!(ctx.trace_id().to_string(), TRACE);
        // Downgraded to version 00 on output.
        assert_eq!(ctx.to_string(), tp("00", TRACE, PARENT, "01"));
    }
    for bad in [
        format!(
            "{}.what-the-future-will-be-like",
            tp("cc", TRACE, PARENT, "01")
        ),
        format!("cc-{TRACE}-{PARENT}-0"),
        tp("cc", &TRACE.to_uppercase(), PARENT, "01"),
        tp("cc", &"0".repeat(32), PARENT, "01"),
    ] {
        assert!(parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn optional_whitespace_around_traceparent_is_ignored() {
    let value = tp("00", TRACE, PARENT, "01");
    for padded in [
        format!(" {value}"),
        format!("\t{value}"),
        format!("{value} "),
        format!("{value}\t"),
        format!("\t {value} \t"),
    ] {
        assert_eq!(parse(&padded).expect("valid").to_string(), value);
    }
}

#[test]
fn reserved_flags_are_cleared_and_random_flag_is_kept() {
    // "Other flags … Vendors MUST set those to zero."
    let ctx = parse(&tp("00", TRACE, PARENT, "ff")).expect("valid");
    assert_eq!(ctx.flags(), TraceFlags::SAMPLED | TraceFlags::RANDOM);
    assert!(ctx.to_string().ends_with("-03"));
    // Level 2: the random-trace-id flag set on input is set on every
    // outgoing traceparent with the same trace id.
    let random = parse(&tp("00", TRACE, PARENT, "02")).expect("valid");
    let child = random.child();
    assert!(child.flags().is_random() && !child.flags().is_sampled());
    assert!(child.to_string().ends_with("-02"));
}

#[test]
fn a_new_trace_has_random_ids_and_says_so() {
    let root = TraceContext::new_root();
    assert!(root.flags().is_random());
    assert!(root.flags().is_sampled());
    assert_ne!(root.trace_id(), TraceContext::new_root().trace_id());
}

#[test]
fn child_updates_parent_id_and_keeps_the_rest() {
    let caller = parse(&tp("00", TRACE, PARENT, "01"))
        .expect("valid")
        .with_state(TraceState::parse("congo=t61rcWkgMzE").expect("valid"));
    let child = caller.child();
    assert_eq!(child.trace_id(), caller.trace_id());
    assert_ne!(child.span_id(), caller.span_id());
    assert_eq!(child.parent_id(), Some(caller.span_id()));
    assert_eq!(child.flags(), caller.flags());
    assert_eq!(child.state(), caller.state());
}

#[test]
fn traceparent_header_rules() {
    let good = tp("00", TRACE, PARENT, "01");
    // Missing, duplicated or invalid traceparent: no context, and the
    // tracestate is discarded with it.
    assert!(TraceContext::from_headers(&headers(&[("tracestate", "foo=1")])).is_none());
    assert!(
        TraceContext::from_headers(&headers(&[("traceparent", &good), ("traceparent", &good)]))
            .is_none()
    );
    assert!(
        TraceContext::from_headers(&headers(&[
            ("traceparent", &tp("ff", TRACE, PARENT, "01")),
            ("tracestate", "foo=1"),
        ]))
        .is_none()
    );
    // Header names are case-insensitive (http normalises them).
    let mut map = HeaderMap::new();
    map.insert(
        http::HeaderName::from_bytes(b"TraceParent").expect("valid name"),
        HeaderValue::from_str(&good).expect("valid"),
    );
    assert!(TraceContext::from_headers(&map).is_some());
}

// ------------------------------------------------------------------- tracestate

#[test]
fn list_members_are_separated_by_commas_with_optional_whitespace() {
    assert_eq!(state("foo=1 \t , \t bar=2, \t baz=3"), "foo=1,bar=2,baz=3");
    assert_eq!(state("foo=1\t \t,\t \tbar=2"), "foo=1,bar=2");
    for padded in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        assert_eq!(state(padded), "foo=1", "{padded:?}");
    }
}

#[test]
fn empty_and_whitespace_only_members_are_allowed() {
    assert_eq!(state(""), "");
    assert!(TraceState::parse("").expect("empty is valid").is_empty());
    assert_eq!(state(" , ,\t,"), "");
    assert_eq!(state(",foo=1,, ,bar=2,"), "foo=1,bar=2");
}

#[test]
fn key_grammar_of_the_editors_draft() {
    // key = ( lcalpha / DIGIT ) 0*255 ( keychar )
    // keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
    let all = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    assert_eq!(state(&format!("{all}=1")), format!("{all}=1"));
    let with_at = format!("{all}@a-z0-9_-*/");
    assert_eq!(state(&format!("{with_at}=1")), format!("{with_at}=1"));
    for key in [
        "0key",
        "9",
        "a",
        "foo@",
        "foo@@bar",
        "foo@bar@baz",
        "tenant@system",
    ] {
        assert_eq!(
            state(&format!("{key}=1,bar=2")),
            format!("{key}=1,bar=2"),
            "{key}"
        );
    }
    for key in [
        "@foo", "_foo", "-foo", "*foo", "/foo", "FOO", "fOo", "foo.bar", "foo bar", "fóo",
    ] {
        assert!(
            TraceState::parse(&format!("{key}=1")).is_none(),
            "{key} accepted"
        );
    }
}

#[test]
fn key_length_limit_is_256_whatever_the_at_signs() {
    let key = "z".repeat(256);
    assert_eq!(state(&format!("foo=1,{key}=1")), format!("foo=1,{key}=1"));
    assert!(TraceState::parse(&format!("foo=1,{}=1", "z".repeat(257))).is_none());
    // The Level 1 multi-tenant limits (241 + `@` + 14) no longer bind: `@`
    // is an ordinary key character after the first.
    for key in [
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
        format!("{}@{}", "t".repeat(200), "v".repeat(55)),
    ] {
        assert_eq!(state(&format!("foo=1,{key}=1")), format!("foo=1,{key}=1"));
    }
    assert!(TraceState::parse(&format!("{}@{}=1", "t".repeat(241), "v".repeat(15))).is_none());
}

#[test]
fn value_grammar() {
    // value = 0*255(chr) nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
    let value: String = (0x20u8..=0x7e)
        .filter(|&c| c != b',' && c != b'=')
        .map(char::from)
        .collect();
    assert_eq!(state(&format!("foo={value}")), format!("foo={value}"));
    // Leading spaces are part of the value; trailing ones are OWS.
    assert_eq!(
        TraceState::parse("foo=  1  ").expect("valid").get("foo"),
        Some("  1")
    );
    assert_eq!(state(&format!("foo={}", "v".repeat(256))).len(), 4 + 256);
    for bad in [
        "foo=".to_owned(),
        "foo= ".to_owned(),
        "foo=bar=baz".to_owned(),
        "foo=a\tb".to_owned(),
        "foo=é".to_owned(),
        "foo".to_owned(),
        "=1".to_owned(),
        format!("foo={}", "v".repeat(257)),
    ] {
        assert!(TraceState::parse(&bad).is_none(), "{bad:?} accepted");
    }
}

#[test]
fn a_malformed_member_discards_the_whole_list() {
    // What the official suite checks at strict level 2: `foo=,bar=3` loses
    // `bar` too, `@foo=1,bar=2` loses `bar`.
    for bad in [
        "foo=,bar=3",
        "@foo=1,bar=2",
        "bar=2,FOO=1",
        "foo=1,foo.bar=1",
    ] {
        assert!(TraceState::parse(bad).is_none(), "{bad}");
    }
    // Across header lines too.
    let ctx = TraceContext::from_headers(&headers(&[
        ("traceparent", &tp("00", TRACE, PARENT, "01")),
        ("tracestate", "foo=1"),
        ("tracestate", &format!("{}=1", "z".repeat(257))),
    ]))
    .expect("traceparent kept");
    assert!(ctx.state().is_empty());
    assert_eq!(ctx.trace_id().to_string(), TRACE);
}

#[test]
fn of_duplicated_keys_the_first_is_kept() {
    assert_eq!(state("foo=1,foo=1"), "foo=1");
    assert_eq!(state("foo=1,bar=2,foo=3"), "foo=1,bar=2");
    let ctx = TraceContext::from_headers(&headers(&[
        ("traceparent", &tp("00", TRACE, PARENT, "00")),
        ("tracestate", "foo=1"),
        ("tracestate", "foo=2"),
    ]))
    .expect("valid");
    assert_eq!(ctx.state().as_str(), "foo=1");
}

#[test]
fn at_most_32_members() {
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let s = TraceState::parse(&members[..32].join(",")).expect("32 members are fine");
    assert_eq!(s.len(), 32);
    assert_eq!(s.get("bar01"), Some("01"));
    assert!(TraceState::parse(&members.join(",")).is_none());
    // A duplicate is not a member of its own.
    let with_dup = format!("{},bar01=again", members[..32].join(","));
    assert_eq!(TraceState::parse(&with_dup).expect("valid").len(), 32);
}

#[test]
fn multiple_header_lines_are_combined_in_order() {
    let ctx = TraceContext::from_headers(&headers(&[
        ("traceparent", &tp("00", TRACE, PARENT, "00")),
        ("tracestate", "foo=1,bar=2"),
        ("tracestate", ""),
        ("tracestate", "rojo=1,congo=2"),
        ("tracestate", "baz=3"),
    ]))
    .expect("valid");
    assert_eq!(ctx.state().as_str(), "foo=1,bar=2,rojo=1,congo=2,baz=3");
}

#[test]
fn lists_within_512_characters_are_kept_whole() {
    // 4 members of 127 characters + 3 commas = 511.
    let members: Vec<String> = (0..4)
        .map(|i| format!("k{i}={}", "v".repeat(124)))
        .collect();
    let list = members.join(",");
    assert_eq!(list.len(), 511);
    assert_eq!(state(&list), list);
}

#[test]
fn long_lists_lose_large_members_first_then_from_the_end() {
    // "Entries larger than 128 characters long SHOULD be removed first.
    // Then entries SHOULD be removed starting from the end."
    let small = |i: usize| format!("s{i}={}", "v".repeat(97)); // 100 chars
    let large = |i: usize| format!("l{i}={}", "v".repeat(197)); // 200 chars
    let list = [small(0), large(1), small(2), large(3), small(4)].join(",");
    assert_eq!(list.len(), 704);
    // Removing l3 (right-most large) leaves 503 ≤ 512: l1 stays.
    assert_eq!(
        state(&list),
        [small(0), large(1), small(2), small(4)].join(",")
    );

    let list = [large(0), small(1), large(2), small(3), large(4), small(5)].join(",");
    // Large ones go right-most first (l4, then l2: 503 fits), before any
    // small one.
    let kept = state(&list);
    assert_eq!(kept, [large(0), small(1), small(3), small(5)].join(","));

    let smalls: Vec<String> = (0..8).map(small).collect();
    let kept = state(&smalls.join(","));
    // 5 × 100 + 4 commas = 504: the last three go.
    assert_eq!(kept, smalls[..5].join(","));
    assert!(kept.len() <= TraceState::MAX_LEN);
}

#[test]
fn mutations_follow_the_specification() {
    let s = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").expect("valid");
    // Add: to the left.
    let added = s.with_member("msp", "x").expect("valid member");
    assert_eq!(
        added.as_str(),
        "msp=x,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    );
    // Update: moved to the left, never duplicated.
    let updated = s.with_member("congo", "ucfJifl5GOE").expect("valid member");
    assert_eq!(updated.as_str(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
    // Delete.
    assert_eq!(s.without_member("rojo").as_str(), "congo=t61rcWkgMzE");
    assert!(s.without_member("rojo").without_member("congo").is_empty());
    // Adding past 32 members drops the right-most.
    let full: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    let full = TraceState::parse(&full.join(",")).expect("valid");
    let more = full.with_member("new", "v").expect("valid member");
    assert_eq!(more.len(), 32);
    assert_eq!(more.iter().next(), Some(("new", "v")));
    assert_eq!(more.get("k31"), None);
    assert_eq!(more.get("k30"), Some("v"));
    // Invalid members are refused.
    assert!(s.with_member("Bad", "x").is_err());
    assert!(s.with_member("ok", "a=b").is_err());
    assert!(s.with_member("ok", "").is_err());
}

#[test]
fn inject_writes_the_combined_list_as_one_header() {
    let ctx = TraceContext::from_headers(&headers(&[
        ("traceparent", &tp("00", TRACE, PARENT, "01")),
        ("tracestate", "foo=1 , bar=2"),
        ("tracestate", "baz=3"),
    ]))
    .expect("valid");
    let mut out = HeaderMap::new();
    out.append("tracestate", HeaderValue::from_static("stale=1"));
    ctx.child().inject(&mut out);
    let states: Vec<_> = out.get_all("tracestate").iter().collect();
    assert_eq!(states, ["foo=1,bar=2,baz=3"]);
    // An empty list sends no tracestate header.
    let mut out = HeaderMap::new();
    TraceContext::new_root().inject(&mut out);
    assert!(out.get("tracestate").is_none());
    assert!(out.get("traceparent").is_some());
}

// ------------------------------------------------------------ spawned tasks

#[tokio::test]
async fn spawned_tasks_keep_the_request_context() {
    let svc = ServiceBuilder::new()
        .layer(TraceContextLayer::new())
        .service(service_fn(|req: http::Request<()>| async move {
            let mine = req.extensions().get::<TraceContext>().cloned();
            let plain = tokio::spawn(async { current() }).await.expect("ran");
            let carried = spawn_in_context(async { current() }).await.expect("ran");
            let wrapped = tokio::spawn(async { current() }.in_current_trace())
                .await
                .expect("ran");
            Ok::<_, Infallible>(http::Response::new((mine, plain, carried, wrapped)))
        }));
    let mut req = http::Request::new(());
    req.headers_mut().insert(
        "traceparent",
        HeaderValue::from_str(&tp("00", TRACE, PARENT, "01")).expect("valid"),
    );
    let (mine, plain, carried, wrapped) = svc.oneshot(req).await.expect("infallible").into_body();
    let mine = mine.expect("context inserted");
    assert_eq!(mine.trace_id().to_string(), TRACE);
    assert_eq!(plain, None, "a plain spawn loses the task-local");
    assert_eq!(carried.as_ref(), Some(&mine));
    assert_eq!(wrapped.as_ref(), Some(&mine));
}

#[tokio::test]
async fn in_trace_binds_an_explicit_context() {
    let ctx = TraceContext::new_root();
    let seen = tokio::spawn(async { current() }.in_trace(ctx.clone()))
        .await
        .expect("ran");
    assert_eq!(seen, Some(ctx));
    // Outside any context nothing is made up.
    assert_eq!(
        spawn_in_context(async { current() }).await.expect("ran"),
        None
    );
}

// ------------------------------------------------- over loopback, like the suite

/// The shape of the W3C suite over real HTTP: a "harness" records the
/// headers of the call a service behind `TraceContextLayer` makes through
/// `PropagateTraceContextLayer` when it receives `sent`.
async fn forwarded(sent: &[(&'static str, &str)]) -> HeaderMap {
    use axum::routing::post;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    async fn serve(app: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let harness = serve(axum::Router::new().route(
        "/callback",
        post(move |headers: HeaderMap| {
            let _ = tx.send(headers);
            std::future::ready("{}")
        }),
    ))
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let propagating = ServiceBuilder::new()
        .layer(msp_core::observe::PropagateTraceContextLayer::new())
        .service(client.clone());
    let service = serve(
        axum::Router::new()
            .route(
                "/test",
                post(move || {
                    let call = http::Request::post(format!("http://{harness}/callback"))
                        .body(Full::new(Bytes::new()))
                        .expect("valid");
                    let propagating = propagating.clone();
                    async move {
                        let res = propagating.oneshot(call).await.expect("harness answers");
                        let _ = res.into_body().collect().await;
                        "{}"
                    }
                }),
            )
            .layer(TraceContextLayer::new()),
    )
    .await;
    let mut req = http::Request::post(format!("http://{service}/test"))
        .body(Full::new(Bytes::new()))
        .expect("valid");
    for (name, value) in sent {
        req.headers_mut()
            .append(*name, HeaderValue::from_str(value).expect("valid"));
    }
    let res = client.request(req).await.expect("service answers");
    assert_eq!(res.status(), 200);
    rx.recv().await.expect("the service called back")
}

#[tokio::test]
async fn the_cases_the_suite_found_failing_pass_over_http() {
    let tp00 = tp("00", TRACE, PARENT, "00");
    let cases = [
        (vec!["foo=1,foo=1"], "foo=1"),
        (vec!["foo=1", "foo=2"], "foo=1"),
        (vec!["foo@=1,bar=2"], "foo@=1,bar=2"),
        (vec!["foo@@bar=1,bar=2"], "foo@@bar=1,bar=2"),
        (vec!["foo@bar@baz=1,bar=2"], "foo@bar@baz=1,bar=2"),
        (vec!["@foo=1,bar=2"], ""),
        (vec!["foo=,bar=3"], ""),
    ];
    let long_key = format!("{}@{}", "t".repeat(241), "v".repeat(14));
    let long = format!("{long_key}=1");
    let expected_long = format!("foo=1,{long}");
    let cases = cases
        .into_iter()
        .chain([(vec!["foo=1", long.as_str()], expected_long.as_str())]);
    for (states, expected) in cases {
        let mut sent = vec![("traceparent", tp00.as_str())];
        sent.extend(states.iter().map(|s| ("tracestate", *s)));
        let got = forwarded(&sent).await;
        let parent = got
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceContext>().ok())
            .expect("a traceparent forwarded");
        assert_eq!(parent.trace_id().to_string(), TRACE, "{states:?}");
        assert_ne!(parent.span_id().to_string(), PARENT, "{states:?}");
        let state = got
            .get("tracestate")
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .unwrap_or_default();
        assert_eq!(state, expected, "{states:?}");
    }
}
