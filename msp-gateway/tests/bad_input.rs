//! The bad-input corpus: raw bytes written to the proxy over a socket,
//! in front of a backend that records every request it receives. Each case
//! gets a clear 4xx or is normalised safely (the table in the
//! `msp_gateway::proxy` docs), the proxy never panics, and the backend
//! never sees a smuggled second request.

mod common;

use common::{Backend, Proxy, ProxyOptions, raw_exchange, spawn_backend, spawn_proxy, statuses};
use msp_gateway::proxy::Limits;

/// Every case is followed on the same connection by this request, so the
/// exchange ends deterministically: either the proxy closed the connection
/// after the case, or it answers the sentinel and closes.
const SENTINEL: &[u8] = b"GET /sentinel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// The first response's status.
    status: u16,
    /// The path the backend must have seen for this case, if any.
    reaches: Option<&'static str>,
}

fn case(
    name: &'static str,
    bytes: impl AsRef<[u8]>,
    status: u16,
    reaches: Option<&'static str>,
) -> Case {
    Case {
        name,
        bytes: bytes.as_ref().to_vec(),
        status,
        reaches,
    }
}

async fn harness() -> (Proxy, Backend) {
    let (addr, backend) = spawn_backend().await;
    let opts = ProxyOptions {
        limits: Limits::default()
            .with_max_header_bytes(8 * 1024)
            .with_max_uri_len(4 * 1024)
            .with_max_body_bytes(64 * 1024),
        ..ProxyOptions::default()
    };
    (spawn_proxy(addr, opts).await, backend)
}

fn corpus() -> Vec<Case> {
    let big_header = format!(
        "GET /big-header HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let many_headers = format!(
        "GET /many-headers HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(5 * 1024));
    vec![
        // CL.TE: a front end reading Content-Length would pass the chunk
        // terminator and treat the rest as a second request.
        case(
            "content-length with transfer-encoding (CL first)",
            b"POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-1 HTTP/1.1\r\nHost: x\r\n\r\n",
            200,
            Some("/cl-te"),
        ),
        // TE.CL: a back end reading Content-Length would stop inside the chunk.
        case(
            "transfer-encoding with content-length (TE first)",
            b"POST /te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1f\r\nGET /smuggled-2 HTTP/1.1\r\nX: \r\n\r\n0\r\n\r\n",
            200,
            Some("/te-cl"),
        ),
        case(
            "two different content-lengths",
            b"POST /two-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 42\r\n\r\nhelloGET /smuggled-3 HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "transfer-encoding that is not chunked",
            b"POST /te-gzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            None,
        ),
        case(
            "obs-fold",
            b"GET /obs-fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
            400,
            None,
        ),
        case(
            "bad chunk size",
            b"POST /bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            400,
            None,
        ),
        case(
            "chunk size overflow",
            b"POST /chunk-overflow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            400,
            None,
        ),
        case(
            "connection nominating x-forwarded-for",
            b"GET /conn-xff HTTP/1.1\r\nHost: x\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            200,
            Some("/conn-xff"),
        ),
        case(
            "space inside a header name",
            b"GET /space-name HTTP/1.1\r\nHost: x\r\nX Bad: 1\r\n\r\n",
            400,
            None,
        ),
        case(
            "space before the colon",
            b"GET /space-colon HTTP/1.1\r\nHost: x\r\nX-Bad : 1\r\n\r\n",
            400,
            None,
        ),
        case(
            "NUL in a value",
            b"GET /nul HTTP/1.1\r\nHost: x\r\nX-Bad: a\0b\r\n\r\n",
            400,
            None,
        ),
        case(
            "bare CR in a value",
            b"GET /cr HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
            400,
            None,
        ),
        case("header section over the limit", big_header, 431, None),
        case("more header fields than the server takes", many_headers, 431, None),
        case("request target over the limit", long_uri, 414, None),
        case(
            "invalid UTF-8 in the path",
            b"GET /caf\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "UTF-8 (non-ASCII) in the path",
            "GET /café HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "percent-encoded dot segments",
            b"GET /api/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "raw dot segments",
            b"GET /api/../admin HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "dot segment with an encoded slash",
            b"GET /api/..%2fadmin HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "encoded NUL in the path",
            b"GET /api/a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            None,
        ),
        case(
            "absolute-form target with a different Host",
            b"GET http://real.example/absolute HTTP/1.1\r\nHost: other.example\r\n\r\n",
            200,
            Some("/absolute"),
        ),
        case("no Host", b"GET /no-host HTTP/1.1\r\n\r\n", 400, None),
        case("no Host, HTTP/1.0", b"GET /no-host-10 HTTP/1.0\r\n\r\n", 400, None),
        case(
            "two Hosts",
            b"GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
            None,
        ),
        case(
            "Host with userinfo",
            b"GET /userinfo HTTP/1.1\r\nHost: user@x\r\n\r\n",
            400,
            None,
        ),
        case("not HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, None),
        case(
            "CONNECT",
            b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n",
            400,
            None,
        ),
        case(
            "content-length over the body limit",
            b"POST /huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
            413,
            None,
        ),
    ]
}

/// Sends every case (each followed by the sentinel) to `addr` and checks
/// its first status and exactly what `backend` saw: no smuggled request.
async fn assert_corpus_answered_cleanly(addr: std::net::SocketAddr, backend: &Backend) {
    for case in corpus() {
        let before = backend.paths().len();
        let mut bytes = case.bytes.clone();
        bytes.extend_from_slice(SENTINEL);
        let raw = raw_exchange(addr, &bytes).await;
        let got = statuses(&raw);
        assert_eq!(
            got.first().copied(),
            Some(case.status),
            "{}: got {}",
            case.name,
            String::from_utf8_lossy(&raw)
        );
        let seen: Vec<String> = backend.paths()[before..]
            .iter()
            .filter(|p| *p != "/sentinel")
            .cloned()
            .collect();
        let expected: Vec<String> = case.reaches.iter().map(|p| (*p).to_owned()).collect();
        assert_eq!(seen, expected, "{}: what the backend saw", case.name);
    }
    assert!(
        backend.paths().iter().all(|p| !p.contains("smuggled")),
        "a smuggled request reached the backend: {:?}",
        backend.paths()
    );
}

#[tokio::test]
async fn every_case_gets_a_clear_answer_and_nothing_is_smuggled() {
    let (proxy, backend) = harness().await;
    assert_corpus_answered_cleanly(proxy.addr, &backend).await;
    proxy.assert_no_panics();
}

#[tokio::test]
async fn smuggled_bytes_stay_inside_the_body_they_were_framed_in() {
    let (proxy, backend) = harness().await;
    let raw = raw_exchange(
        proxy.addr,
        b"POST /te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1f\r\nGET /smuggled-2 HTTP/1.1\r\nX: \r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{}", String::from_utf8_lossy(&raw));
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"GET /smuggled-2 HTTP/1.1\r\nX: \r\n");
    assert!(
        seen[0]
            .headers
            .get("content-length")
            .is_none_or(|v| v == "31")
    );
}

#[tokio::test]
async fn connection_nominating_x_forwarded_for_leaves_the_gateways_own() {
    let (proxy, backend) = harness().await;
    raw_exchange(
        proxy.addr,
        b"GET /conn-xff HTTP/1.1\r\nHost: x\r\nConnection: X-Forwarded-For, close\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    )
    .await;
    assert_eq!(backend.last().headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn absolute_form_authority_replaces_a_different_host() {
    let (proxy, backend) = harness().await;
    let raw = raw_exchange(
        proxy.addr,
        b"GET http://real.example/absolute?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200]);
    let seen = backend.last();
    assert_eq!(seen.uri, "/absolute?q=1");
    assert_eq!(seen.headers["host"], "real.example");
    assert_eq!(seen.headers["x-forwarded-host"], "real.example");
}

/// The same corpus through the whole `Gateway` (routing, limits, the
/// upstream stack), served by `Gateway::serve` with a catch-all route to the
/// recording backend.
async fn gateway_harness() -> (std::net::SocketAddr, Backend) {
    let (addr, backend) = spawn_backend().await;
    let yaml = format!(
        "limits:\n  max_header_bytes: 8192\n  max_uri_len: 4096\n  max_body_bytes: 65536\n\
         routes:\n  - path: \"/*\"\n    service: backend\n\
         services:\n  backend:\n    instances: [\"{addr}\"]\n"
    );
    let config = msp_gateway::config::GatewayConfig::from_yaml(&yaml, "corpus.yaml")
        .expect("valid corpus config");
    let gateway = msp_gateway::Gateway::from_config(config)
        .await
        .expect("gateway builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gateway");
    let gw_addr = listener.local_addr().expect("gateway address");
    tokio::spawn(gateway.serve(listener));
    (gw_addr, backend)
}

#[tokio::test]
async fn every_case_through_the_gateway_gets_a_clear_answer_and_nothing_is_smuggled() {
    let (gw, backend) = gateway_harness().await;
    assert_corpus_answered_cleanly(gw, &backend).await;
}
