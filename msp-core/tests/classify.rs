//! Classification of HTTP and gRPC results, timeouts and connect errors.

use http::{HeaderMap, Response, StatusCode};
use msp_core::classify::{
    AnyError, Classify, ClassifyEos, ErrorKind, GrpcClassifier, GrpcCode, HttpClassifier, Outcome,
    StatusSet, error_kind,
};
use std::time::Duration;

fn response(status: u16) -> Response<()> {
    Response::builder()
        .status(status)
        .body(())
        .expect("valid status")
}

fn http(c: &HttpClassifier, status: u16) -> Outcome {
    c.classify(Ok::<_, &std::io::Error>(&response(status)))
}

#[test]
fn http_default_classes() {
    let c = HttpClassifier::new();
    for s in [200, 201, 204, 301, 304] {
        assert_eq!(http(&c, s), Outcome::Success, "{s}");
    }
    // 4xx: the server worked, the client asked for something wrong.
    for s in [400, 401, 403, 404, 409, 422, 429] {
        assert_eq!(http(&c, s), Outcome::Success, "{s}");
    }
    for s in [500, 502, 503, 504, 599] {
        assert_eq!(http(&c, s), Outcome::Failure, "{s}");
    }
}

#[test]
fn http_configurable_sets() {
    let c = HttpClassifier::new()
        .failure_status(StatusCode::TOO_MANY_REQUESTS)
        .success_status(StatusCode::NOT_IMPLEMENTED)
        .ignore_status(StatusCode::NOT_FOUND);
    assert_eq!(http(&c, 429), Outcome::Failure);
    assert_eq!(http(&c, 501), Outcome::Success);
    assert_eq!(http(&c, 404), Outcome::Ignored);
    assert_eq!(http(&c, 500), Outcome::Failure);
    // A later failure_status un-ignores.
    let c = c.failure_status(StatusCode::NOT_FOUND);
    assert_eq!(http(&c, 404), Outcome::Failure);

    let only_503 = HttpClassifier::new().failures({
        let mut s = StatusSet::empty();
        s.insert(StatusCode::SERVICE_UNAVAILABLE);
        s
    });
    assert_eq!(http(&only_503, 500), Outcome::Success);
    assert_eq!(http(&only_503, 503), Outcome::Failure);
}

#[test]
fn errors_are_failures_and_kinds_are_told_apart() {
    let c = HttpClassifier::new();
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        c.classify(Err::<&Response<()>, _>(&refused)),
        Outcome::Failure
    );
    assert_eq!(AnyError.classify(Err::<&(), _>(&refused)), Outcome::Failure);
    assert_eq!(error_kind(&refused), ErrorKind::Connect);

    let other = std::io::Error::other("disk on fire");
    assert_eq!(error_kind(&other), ErrorKind::Other);
}

#[tokio::test]
async fn real_connect_error_is_connect() {
    // Bind then drop a listener: the port is closed, the connect is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect_err("port is closed");
    assert_eq!(error_kind(&err), ErrorKind::Connect);
}

#[tokio::test(start_paused = true)]
async fn real_timeouts_are_timeouts() {
    let elapsed = tokio::time::timeout(Duration::from_millis(10), std::future::pending::<()>())
        .await
        .expect_err("never completes");
    assert_eq!(error_kind(&elapsed), ErrorKind::Timeout);

    let io_timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
    assert_eq!(error_kind(&io_timeout), ErrorKind::Timeout);

    // msp's own timeout marker, boxed and behind wrappers, as msp-resilience
    // returns it.
    let boxed: msp_core::BoxError = msp_core::Elapsed::new().into();
    assert_eq!(error_kind(&*boxed), ErrorKind::Timeout);
    let wrapped = std::io::Error::other(Wrapper(msp_core::Elapsed::new()));
    assert_eq!(error_kind(&wrapped), ErrorKind::Timeout);
}

/// An error type of some other crate that wraps a timeout as its source.
#[derive(Debug, thiserror::Error)]
#[error("call failed")]
struct Wrapper(#[source] msp_core::Elapsed);

#[test]
fn an_error_is_classified_by_its_type_not_its_text() {
    // Errors that only *say* they timed out (the texts msp-core used to
    // match) are not timeouts: classification is by type.
    for text in [
        "request timed out",
        "deadline has elapsed",
        "operation timed out",
    ] {
        let e = std::io::Error::other(text);
        assert_eq!(error_kind(&e), ErrorKind::Other, "{text}");
    }
    #[derive(Debug, thiserror::Error)]
    #[error("request timed out")]
    struct Elapsed;
    assert_eq!(error_kind(&Elapsed), ErrorKind::Other);
}

#[tokio::test(start_paused = true)]
async fn towers_timeout_error_is_a_timeout() {
    // tower's timeout error, type-erased the way tower returns it.
    use tower::{ServiceBuilder, ServiceExt};
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(10))
        .service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>());
    let err = svc.oneshot(()).await.expect_err("times out");
    assert_eq!(error_kind(&*err), ErrorKind::Timeout);
}

fn grpc_headers(code: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", code.parse().expect("header value"));
    h
}

#[test]
fn grpc_statuses() {
    let c = GrpcClassifier::new();
    let expect = [
        (0, Outcome::Success),  // OK
        (1, Outcome::Ignored),  // CANCELLED
        (2, Outcome::Failure),  // UNKNOWN
        (3, Outcome::Success),  // INVALID_ARGUMENT
        (4, Outcome::Failure),  // DEADLINE_EXCEEDED
        (5, Outcome::Success),  // NOT_FOUND
        (7, Outcome::Success),  // PERMISSION_DENIED
        (8, Outcome::Success),  // RESOURCE_EXHAUSTED
        (12, Outcome::Success), // UNIMPLEMENTED
        (13, Outcome::Failure), // INTERNAL
        (14, Outcome::Failure), // UNAVAILABLE
        (15, Outcome::Failure), // DATA_LOSS
        (16, Outcome::Success), // UNAUTHENTICATED
    ];
    for (code, outcome) in expect {
        // In trailers…
        assert_eq!(
            c.classify_eos(Some(&grpc_headers(&code.to_string()))),
            outcome,
            "trailer {code}"
        );
        // …and in the headers of a trailers-only response.
        let mut res = response(200);
        *res.headers_mut() = grpc_headers(&code.to_string());
        assert_eq!(c.classify(Ok::<_, &()>(&res)), outcome, "header {code}");
    }
}

#[test]
fn grpc_edge_cases() {
    let c = GrpcClassifier::new();
    // Garbage and out-of-range codes are UNKNOWN, a failure.
    assert_eq!(
        c.classify_eos(Some(&grpc_headers("banana"))),
        Outcome::Failure
    );
    assert_eq!(c.classify_eos(Some(&grpc_headers("99"))), Outcome::Failure);
    assert_eq!(GrpcCode::from_i32(-1), GrpcCode::Unknown);
    // A stream that ends without a status is a protocol failure.
    assert_eq!(c.classify_eos(None), Outcome::Failure);
    assert_eq!(c.classify_eos(Some(&HeaderMap::new())), Outcome::Failure);
    // No grpc-status in headers: the HTTP status decides for now.
    assert_eq!(c.classify(Ok::<_, &()>(&response(200))), Outcome::Success);
    assert_eq!(c.classify(Ok::<_, &()>(&response(503))), Outcome::Failure);
    // A transport error.
    assert_eq!(c.classify(Err::<&Response<()>, _>(&())), Outcome::Failure);
    // Reconfigured sets.
    let c = GrpcClassifier::new()
        .failure_code(GrpcCode::ResourceExhausted)
        .success_code(GrpcCode::Unknown)
        .ignore_code(GrpcCode::Internal);
    assert_eq!(
        c.classify_code(GrpcCode::ResourceExhausted),
        Outcome::Failure
    );
    assert_eq!(c.classify_code(GrpcCode::Unknown), Outcome::Success);
    assert_eq!(c.classify_code(GrpcCode::Internal), Outcome::Ignored);
}
