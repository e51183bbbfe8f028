//! Behaviour of the rate limiters: quotas, sharing across clones (over real
//! HTTP, the axum#2634 scenario), keys, runtime changes and eviction.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{HeaderName, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_resilience::rate_limit::error::RateLimited;
use msp_resilience::rate_limit::{
    Clock, HeaderKey, InvalidKey, InvalidQuota, KeyExtractor, KeyFn, KeyedRateLimiter, PeerAddr,
    Quota, RateLimitConfig, RateLimitLayer, RateLimiter,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::advance;
use tower::{Service, ServiceExt, service_fn};

fn q(s: &str) -> Quota {
    s.parse().expect("valid quota")
}

#[test]
fn quota_strings() {
    let cases = [
        ("1000/hour", 1000, 3600, 1000),
        ("50/s", 50, 1, 50),
        ("10/min", 10, 60, 10),
        ("5/second", 5, 1, 5),
        ("50/s burst 100", 50, 1, 100),
        (" 3 / day ", 3, 86_400, 3),
        ("7/30s", 7, 30, 7),
        ("2/90m", 2, 5400, 2),
    ];
    for (s, limit, secs, burst) in cases {
        let quota = q(s);
        assert_eq!(
            (quota.limit(), quota.period(), quota.burst()),
            (limit, Duration::from_secs(secs), burst),
            "{s}"
        );
    }
    let bad = [
        ("", InvalidQuota::Syntax(String::new())),
        ("100", InvalidQuota::Syntax("100".into())),
        ("x/s", InvalidQuota::Count("x".into())),
        ("0/s", InvalidQuota::Count("0".into())),
        ("-1/s", InvalidQuota::Count("-1".into())),
        ("10/fortnight", InvalidQuota::Period("fortnight".into())),
        ("10/0s", InvalidQuota::Period("0s".into())),
        ("10/", InvalidQuota::Syntax("10/".into())),
        ("10/s burst", InvalidQuota::Syntax("10/s burst".into())),
        ("10/s burst 0", InvalidQuota::Burst("0".into())),
        ("10/s burst x", InvalidQuota::Burst("x".into())),
        (
            "10/s bursts 5",
            InvalidQuota::Syntax("10/s bursts 5".into()),
        ),
        (
            "10/s burst 5 extra",
            InvalidQuota::Syntax("10/s burst 5 extra".into()),
        ),
    ];
    for (s, err) in bad {
        assert_eq!(s.parse::<Quota>(), Err(err), "{s:?}");
    }
    assert!(matches!(
        "4000000000/ns".parse::<Quota>(),
        Err(InvalidQuota::TooFine { .. })
    ));
    // serde: a string or fields, unknown fields rejected.
    let from_str: Quota = serde_json::from_str(r#""100/min burst 10""#).expect("string");
    let from_fields: Quota =
        serde_json::from_str(r#"{"limit":100,"period":"1m","burst":10}"#).expect("fields");
    assert_eq!(from_str, from_fields);
    assert!(serde_json::from_str::<Quota>(r#"{"limit":1,"period":"1s","per":2}"#).is_err());
    assert!(serde_json::from_str::<Quota>(r#""1 per second""#).is_err());
}

#[tokio::test(start_paused = true)]
async fn gcra_admits_burst_then_the_sustained_rate() {
    let limiter = RateLimiter::new(q("10/s burst 3"));
    for left in [2, 1, 0] {
        assert_eq!(limiter.check().expect("burst").remaining(), left);
    }
    let limited = limiter.check().expect_err("burst used");
    assert_eq!(limited.retry_after(), Duration::from_millis(100));
    advance(Duration::from_millis(99)).await;
    assert!(limiter.check().is_err());
    advance(Duration::from_millis(1)).await;
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_err());
    // Idle for long: only the burst is available, not more.
    advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        assert!(limiter.check().is_ok());
    }
    assert!(limiter.check().is_err());
}

#[tokio::test(start_paused = true)]
async fn quota_changes_at_runtime_for_every_clone() {
    let limiter = RateLimiter::new(q("2/min"));
    let clone = limiter.clone();
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_ok());
    assert!(clone.check().is_err());
    clone.set_quota(q("4/min"));
    assert_eq!(limiter.quota(), q("4/min"));
    // The used part carries over: 2 of 4 left, not a fresh 4.
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_err());
    limiter.set_quota(q("1/hour"));
    advance(Duration::from_secs(60)).await;
    assert!(clone.check().is_err(), "the stricter quota applies at once");
}

#[tokio::test]
async fn tower_service_clones_share_one_limit_and_reject_with_retry_after() {
    let svc = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::new(RateLimiter::new(q("10/hour"))))
        .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let mut admitted = 0;
    for _ in 0..100 {
        let mut clone = svc.clone();
        match clone.ready().await.expect("ready").call(()).await {
            Ok(()) => admitted += 1,
            Err(e) => {
                let limited = e.downcast_ref::<RateLimited>().expect("RateLimited");
                assert!(limited.retry_after() > Duration::from_secs(359));
                assert!(limited.retry_after() <= Duration::from_secs(360));
            }
        }
    }
    assert_eq!(admitted, 10);
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    addr
}

/// The axum#2634 scenario: axum clones the service for every connection
/// and request; the limit must hold across all of them.
#[tokio::test]
async fn limit_holds_across_100_clones_behind_axum_over_http() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(RateLimiter::new(q("25/hour"))).answer_429());
    let addr = serve(app).await;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move {
            let uri = format!("http://{addr}/").parse::<http::Uri>().expect("uri");
            client.get(uri).await.expect("response")
        });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(res) = tasks.join_next().await {
        let res = res.expect("task");
        let h = res.headers();
        assert_eq!(h["ratelimit-limit"], "25");
        match res.status() {
            StatusCode::OK => {
                ok += 1;
                assert!(h.contains_key("ratelimit-remaining"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_eq!(h["ratelimit-remaining"], "0");
                let retry: u64 = h["retry-after"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("secs");
                assert!((1..=144).contains(&retry), "retry-after {retry}");
                let reset: u64 = h["ratelimit-reset"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("secs");
                assert!(reset > 3500 && reset <= 3600, "reset {reset}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (25, 75));
}

#[tokio::test]
async fn keyed_by_peer_ip_over_http() {
    let limiter = KeyedRateLimiter::<IpAddr>::new(q("5/hour"));
    let peer = PeerAddr::with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::keyed(limiter.clone(), peer).answer_429());
    let addr = serve(app).await;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut ok = 0;
    for _ in 0..20 {
        let uri = format!("http://{addr}/").parse::<http::Uri>().expect("uri");
        if client.get(uri).await.expect("response").status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(limiter.len(), 1, "one key: 127.0.0.1");
}

/// `PeerAddr::new()` reads axum's `ConnectInfo` itself (feature `axum`):
/// every request from 127.0.0.1 is one key with that key's own quota.
#[cfg(feature = "axum")]
#[tokio::test]
async fn peer_addr_reads_axum_connect_info_without_a_reader() {
    let limiter = KeyedRateLimiter::builder(q("100/hour"))
        .quota_for(IpAddr::from([127, 0, 0, 1]), q("3/hour"))
        .build();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::keyed(limiter.clone(), PeerAddr::new()).answer_429());
    let addr = serve(app).await;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let uri = format!("http://{addr}/").parse::<http::Uri>().expect("uri");
        statuses.push(client.get(uri).await.expect("response").status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(limiter.len(), 1, "keyed by 127.0.0.1, not unkeyed");
}

#[test]
fn peer_addr_reads_a_socket_addr_extension() {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 1, 2, 3], 5000)));
    assert_eq!(
        PeerAddr::new().extract(&req),
        Some(IpAddr::from([10, 1, 2, 3]))
    );
    assert_eq!(PeerAddr::new().extract(&Request::new(())), None);
}

#[tokio::test(start_paused = true)]
async fn keyed_limits_with_per_key_quotas() {
    let limiter = KeyedRateLimiter::builder(q("2/min"))
        .quota_for("gold".to_owned(), q("5/min"))
        .quota_fn(|k: &String| k.starts_with("free-").then(|| q("1/min")))
        .build();
    let admitted = |key: &str, n: usize| {
        (0..n)
            .filter(|_| limiter.check(&key.to_owned()).is_ok())
            .count()
    };
    assert_eq!(admitted("alice", 10), 2);
    assert_eq!(admitted("bob", 10), 2);
    assert_eq!(admitted("gold", 10), 5);
    assert_eq!(admitted("free-carol", 10), 1);

    // Runtime: a key gets its own quota, then goes back to the default.
    limiter.set_quota_for("alice".to_owned(), Some(q("10/min")));
    assert_eq!(admitted("alice", 20), 8, "2 of 10 were used");
    limiter.set_quota_for("alice".to_owned(), None);
    advance(Duration::from_secs(60)).await;
    assert_eq!(
        admitted("alice", 10),
        0,
        "back on 2/min with a TAT far ahead"
    );

    // Runtime: the default quota for every key without its own.
    limiter.set_quota(q("4/min"));
    assert_eq!(admitted("bob", 10), 4);
    assert_eq!(admitted("dave", 10), 4);
    assert_eq!(admitted("gold", 10), 5, "own quotas unaffected");
}

#[tokio::test(start_paused = true)]
async fn keyed_by_header_and_closure() {
    let svc = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::keyed(
            KeyedRateLimiter::new(q("1/hour")),
            HeaderKey::new(HeaderName::from_static("x-api-key")),
        ))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, std::io::Error>(())
        }));
    let req = |key: Option<&str>| {
        let mut b = Request::builder();
        if let Some(k) = key {
            b = b.header("x-api-key", k);
        }
        b.body(()).expect("request")
    };
    assert!(svc.clone().oneshot(req(Some("a"))).await.is_ok());
    assert!(svc.clone().oneshot(req(Some("a"))).await.is_err());
    assert!(svc.clone().oneshot(req(Some("b"))).await.is_ok());
    // Requests without a key share one limit.
    assert!(svc.clone().oneshot(req(None)).await.is_ok());
    assert!(svc.clone().oneshot(req(None)).await.is_err());

    let by_path = RateLimitLayer::keyed(
        KeyedRateLimiter::new(q("2/hour")),
        KeyFn(|r: &Request<Body>| Some(r.uri().path().to_owned())),
    );
    let svc = tower::ServiceBuilder::new()
        .layer(by_path)
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, std::io::Error>(())
        }));
    let get = |p: &'static str| Request::get(p).body(Body::empty()).expect("request");
    let mut ok = 0;
    for p in ["/a", "/a", "/a", "/b"] {
        ok += usize::from(svc.clone().oneshot(get(p)).await.is_ok());
    }
    assert_eq!(ok, 3);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted() {
    let limiter = KeyedRateLimiter::<u32>::builder(q("1/s"))
        .shards(1)
        .idle_grace(Duration::from_millis(500))
        .build();
    for k in 0..50 {
        limiter.check(&k).expect("fresh key");
    }
    assert_eq!(limiter.evict_idle(), 0, "every key is still limited");
    assert_eq!(limiter.len(), 50);
    advance(Duration::from_secs(1)).await;
    limiter.check(&0).expect("replenished");
    assert_eq!(limiter.evict_idle(), 49, "key 0 was just used");
    assert_eq!(limiter.len(), 1);
    // An evicted key starts over exactly as if it had been kept.
    limiter.check(&7).expect("full burst");
    assert!(limiter.check(&7).is_err());

    // Automatic: a shard sweeps idle keys when it doubles.
    for k in 100..200 {
        let _ = limiter.check(&k);
        advance(Duration::from_millis(10)).await;
    }
    assert!(
        limiter.len() < 150,
        "swept while growing: {}",
        limiter.len()
    );
    advance(Duration::from_secs(2)).await;
    for k in 1000..2000 {
        let _ = limiter.check(&k);
        advance(Duration::from_millis(50)).await;
    }
    assert!(
        limiter.len() <= 128,
        "bounded by the live keys: {}",
        limiter.len()
    );
}

#[tokio::test(start_paused = true)]
async fn limiter_from_config() {
    let c: RateLimitConfig = serde_json::from_str(
        r#"{"quota": "2/min", "per_key": {"10.0.0.7": "5/min"}, "idle_grace": "1m"}"#,
    )
    .expect("valid");
    assert_eq!(c.clock, Clock::Tokio);
    let keyed = c.keyed::<IpAddr>().expect("keys parse");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let count = |k: IpAddr| (0..10).filter(|_| keyed.check(&k).is_ok()).count();
    assert_eq!(count(ip("10.0.0.1")), 2);
    assert_eq!(count(ip("10.0.0.7")), 5);
    let direct = c.direct();
    assert_eq!((0..10).filter(|_| direct.check().is_ok()).count(), 2);

    let bad: RateLimitConfig =
        serde_json::from_str(r#"{"quota": "1/s", "per_key": {"not-an-ip": "2/s"}}"#)
            .expect("valid");
    assert_eq!(
        bad.keyed::<IpAddr>().expect_err("bad key"),
        InvalidKey("not-an-ip".into())
    );
    for wrong in [
        r#"{"quota": "1/s", "unknown": 1}"#,
        r#"{"quota": "1 per s"}"#,
        r#"{"quota": "1/s", "clock": "atomic"}"#,
        r#"{"per_key": {}}"#,
    ] {
        assert!(
            serde_json::from_str::<RateLimitConfig>(wrong).is_err(),
            "{wrong}"
        );
    }
}
