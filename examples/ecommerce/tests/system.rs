//! The whole system in-process (every service and the gateway on
//! 127.0.0.1:0, SQLite files in a temp dir), driven over real HTTP through
//! the gateway.

use ecommerce::demo::Http;
use ecommerce::services::notification::FeedEntry;
use ecommerce::{System, SystemConfig};
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::broadcast;

async fn start(dir: &tempfile::TempDir) -> System {
    let config = SystemConfig {
        data_dir: dir.path().to_path_buf(),
        gateway_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SystemConfig::default()
    };
    System::start(config).await.expect("system starts")
}

/// Feed entries for `order` until one has topic `last` (bounded: the
/// saga's end is announced by notification-service, nothing is polled).
async fn feed_until(
    feed: &mut broadcast::Receiver<FeedEntry>,
    order: &str,
    last: &str,
) -> Vec<FeedEntry> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let entry = feed.recv().await.expect("feed open");
            if entry.order_id == order {
                let done = entry.topic == last;
                seen.push(entry);
                if done {
                    return;
                }
            }
        }
    })
    .await
    .expect("the order's events arrive");
    seen
}

async fn login(gw: &Http) -> String {
    let creds = json!({"email": "ada@example.com", "password": "correct horse"});
    let (status, _) = gw
        .post("/api/auth/signup", None, creds.clone())
        .await
        .expect("signup");
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = gw
        .post("/api/auth/login", None, creds)
        .await
        .expect("login");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    body["access_token"].as_str().expect("a JWT").to_owned()
}

fn topics(entries: &[FeedEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in entries {
        *counts.entry(e.topic.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_complete_or_compensate_through_the_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let gw = Http::new(system.gateway_url());
    let mut feed = system.subscribe_feed();

    // Public: the catalog and its FTS5 search.
    let (status, products) = gw.get("/api/products", None).await.expect("list");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(products.as_array().map(Vec::len), Some(4), "{products}");
    let (status, hits) = gw
        .get("/api/products/search?q=desk%20lamp", None)
        .await
        .expect("search");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hits[0]["sku"], "lamp-7", "{hits}");

    // Orders need a key: none → 401 from the gateway, a bad one too.
    let order = json!({"sku": "book-42", "quantity": 2, "address": "1 Main St"});
    let (status, _) = gw
        .post("/api/orders", None, order.clone())
        .await
        .expect("post");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = gw
        .post("/api/orders", Some("not-a-key"), order.clone())
        .await
        .expect("post");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A JWT from user-service's login works at once.
    let token = login(&gw).await;
    let (status, placed) = gw
        .post_bearer("/api/orders", &token, order)
        .await
        .expect("post");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "pending");
    assert_eq!(placed["cents"], 2 * 1_999);
    let id = placed["id"].as_str().expect("id").to_owned();
    let events = feed_until(&mut feed, &id, "order.completed").await;
    let (status, view) = gw
        .get_bearer(&format!("/api/orders/{id}"), &token)
        .await
        .expect("get");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["status"], "completed", "{view}");
    let history = view["history"].to_string();
    for step in ["inventory", "payment", "shipping"] {
        assert!(history.contains(step), "{history}");
    }

    // The FAIL address: shipping refuses, payment is refunded, stock is back.
    let inventory = Http::new(format!(
        "http://{}",
        system.service_addr("inventory-service").expect("runs")
    ));
    let payment = Http::new(format!(
        "http://{}",
        system.service_addr("payment-service").expect("runs")
    ));
    let stock = |v: Value| v["available"].as_i64().expect("available");
    let before = stock(inventory.get("/stock/lamp-7", None).await.expect("stock").1);
    let bad = json!({"sku": "lamp-7", "quantity": 3, "address": "FAIL street"});
    let (status, placed) = gw
        .post_bearer("/api/orders", &token, bad)
        .await
        .expect("post");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let bad_id = placed["id"].as_str().expect("id").to_owned();
    let bad_events = feed_until(&mut feed, &bad_id, "order.compensated").await;
    let (_, view) = gw
        .get_bearer(&format!("/api/orders/{bad_id}"), &token)
        .await
        .expect("get");
    assert_eq!(view["status"], "compensated", "{view}");
    assert_eq!(
        stock(inventory.get("/stock/lamp-7", None).await.expect("stock").1),
        before
    );
    let (status, charge) = payment
        .get(&format!("/charges/{bad_id}:payment"), None)
        .await
        .expect("charge");
    assert_eq!(status, StatusCode::OK, "{charge}");
    assert_eq!(charge["state"], "refunded");
    assert_eq!(charge["cents"], 3 * 4_500);

    // The feed: each event once, also when the bus delivers it again.
    let notifications = Http::new(format!(
        "http://{}",
        system.service_addr("notification-service").expect("runs")
    ));
    for (order, events, last) in [
        (&id, &events, "order.completed"),
        (&bad_id, &bad_events, "order.compensated"),
    ] {
        let expected = BTreeMap::from([("order.placed".to_owned(), 1), (last.to_owned(), 1)]);
        assert_eq!(topics(events), expected);
        let (_, stored) = notifications
            .get(&format!("/feed?order={order}"), None)
            .await
            .expect("feed");
        let stored: Vec<FeedEntry> = serde_json::from_value(stored).expect("entries");
        assert_eq!(topics(&stored), expected);
    }

    system.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_recorded_once() {
    use msp_saga::outbox::{OutboxMessage, Publisher};
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let mut feed = system.subscribe_feed();
    let msg = OutboxMessage::json("order.placed", &json!({"order_id": "o-1"})).expect("json");
    for _ in 0..3 {
        system.bus().publish(&msg).await.expect("published");
    }
    // A marker after the three deliveries: once it is recorded, the
    // duplicates before it have been handled.
    let marker = OutboxMessage::json("order.completed", &json!({"order_id": "o-1"})).expect("json");
    system.bus().publish(&marker).await.expect("published");
    let seen = feed_until(&mut feed, "o-1", "order.completed").await;
    assert_eq!(
        topics(&seen),
        BTreeMap::from([
            ("order.completed".to_owned(), 1),
            ("order.placed".to_owned(), 1)
        ])
    );
    system.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_story_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let story = ecommerce::demo::run(&system, true)
        .await
        .expect("the demo runs");
    assert_eq!(story.products, 4);
    assert_eq!(story.search_hits, ["lamp-7"]);
    assert_eq!(story.order_without_key, 401);
    assert_eq!(story.completed.1, "completed");
    assert_eq!(story.compensated.1, "compensated");
    assert_eq!(story.stock_before_after.0, story.stock_before_after.1);
    assert_eq!(story.charge_state, "refunded");
    assert!(story.rate_limited);
    // Chapter 7: the breaker to payment-service opened under injected
    // faults, rejected payment attempts at once, and closed again.
    assert!(story.breaker.opened, "{story:?}");
    assert_eq!(story.breaker.during.1, "compensated", "{story:?}");
    assert!(story.breaker.fast_failures >= 1, "{story:?}");
    assert_eq!(story.breaker.after.1, "completed", "{story:?}");
    assert_eq!(story.breaker.final_state, "closed", "{story:?}");
    // Chapter 8: a product-service instance crashed under load: no client
    // request failed, the gateway retried and ejected the instance.
    let crash = &story.crash;
    assert_eq!(crash.instances, 2, "{crash:?}");
    assert!(crash.sent >= 160, "{crash:?}");
    assert_eq!(crash.failed, 0, "{crash:?}");
    assert!(crash.ejected, "{crash:?}");
    assert!(crash.retries >= 1, "{crash:?}");
    // A crash, not a stop: still registered, but nothing listens.
    let crashed = crash.crashed.expect("an instance crashed");
    let products = msp_core::ServiceName::new("product-service").expect("name");
    let listed = msp_discovery::Registry::instances(system.registry(), &products)
        .await
        .expect("list");
    assert!(listed.iter().any(|i| i.addr() == crashed), "{listed:?}");
    assert!(tokio::net::TcpStream::connect(crashed).await.is_err());
    // Chapter 9: a setting edited in the config server's files, live; a
    // broken file changes nothing.
    let reload = &story.reload;
    assert_eq!(reload.hits_before, 3, "{reload:?}");
    assert_eq!(reload.hits_after, 1, "{reload:?}");
    assert_eq!(reload.server_status_broken, 500, "{reload:?}");
    assert_eq!(reload.hits_with_broken_file, 1, "{reload:?}");
    assert_eq!(reload.restored_max_results, 10, "{reload:?}");
    // 20/minute on /api/auth/*: signup + login took 2 (no exact count:
    // the quota refills with time).
    assert!(story.requests_before_429 >= 1, "{story:?}");
    system.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_streams_over_sse() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let addr = system.service_addr("notification-service").expect("runs");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("http://{addr}/feed/stream"))
        .body(Empty::new())
        .expect("request");
    let res = client.request(req).await.expect("stream opens");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();

    // The subscription exists once the head arrived: place an order.
    let gw = Http::new(system.gateway_url());
    let order = json!({"sku": "tea-3", "quantity": 1, "address": "2 High St"});
    let (status, placed) = gw
        .post("/api/orders", Some("demo-key"), order)
        .await
        .expect("post");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["id"].as_str().expect("id").to_owned();

    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !text.contains("event: order.completed") {
            let frame = body.frame().await.expect("stream open").expect("frame");
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await
    .expect("the order's events are streamed");
    assert!(text.contains("event: order.placed"), "{text}");
    assert!(text.contains(&id), "{text}");
    drop(body);
    system.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_deregisters_first_and_orders_compensate_without_it() {
    use msp_discovery::Registry;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut system = start(&dir).await;
    let shipping = msp_core::ServiceName::new("shipping-service").expect("name");
    let listed = system.registry().instances(&shipping).await.expect("list");
    assert_eq!(listed.len(), 1);

    let report = system
        .stop_service("shipping-service")
        .await
        .expect("stops");
    assert!(
        report
            .hooks
            .first()
            .is_some_and(|h| h.name.starts_with("deregister shipping-service")),
        "{:?}",
        report.hooks
    );
    assert_eq!(report.drain.abandoned, 0);
    assert!(
        system
            .registry()
            .instances(&shipping)
            .await
            .expect("list")
            .is_empty()
    );

    // Without shipping, the saga's last step cannot succeed: it retries,
    // gives up and compensates.
    let mut feed = system.subscribe_feed();
    let gw = Http::new(system.gateway_url());
    let order = json!({"sku": "mug-1", "quantity": 1, "address": "3 Low St"});
    let (status, placed) = gw
        .post("/api/orders", Some("demo-key"), order)
        .await
        .expect("post");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["id"].as_str().expect("id").to_owned();
    let events = feed_until(&mut feed, &id, "order.compensated").await;
    assert_eq!(events.len(), 2, "{events:?}");
    system.stop().await.expect("clean stop");
}

/// Writes to payment-service need order-service's mTLS identity: user-service
/// (a valid certificate of the same trust domain) and a plaintext client get
/// 403 problem+json, reads stay open, and a client expecting
/// payment-service refuses an instance that proves to be another service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_order_service_may_write_to_payment_service_over_mtls() {
    use ecommerce::platform::ServiceClient;
    use http::Method;

    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let security = system.security();
    let identity = |name: &str| security.identity(name).expect("identity files");
    let charge = json!({"order_id": "mtls-1", "cents": 100});
    let post = |client: ServiceClient, key: &'static str| {
        let charge = charge.clone();
        async move {
            client
                .send(Method::POST, "/charges", Some(key), Some(&charge))
                .await
                .expect("an answer")
        }
    };

    let user = identity("user-service");
    let as_user = ServiceClient::with_identity(system.registry(), "payment-service", Some(&user))
        .expect("client");
    let denied = post(as_user, "mtls-1:payment").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let problem: Value = denied.json().expect("problem+json");
    assert_eq!(problem["code"], "permission_denied", "{problem}");

    let plain = ServiceClient::new(system.registry(), "payment-service").expect("client");
    assert_eq!(
        post(plain.clone(), "mtls-2:payment").await.status,
        StatusCode::FORBIDDEN
    );
    // Reads are open, also in plaintext: no such charge, not forbidden.
    let read = plain
        .send(Method::GET, "/charges/mtls-1:payment", None, None)
        .await
        .expect("an answer");
    assert_eq!(read.status, StatusCode::NOT_FOUND);

    let order = identity("order-service");
    let as_order = ServiceClient::with_identity(system.registry(), "payment-service", Some(&order))
        .expect("client");
    assert_eq!(
        post(as_order, "mtls-3:payment").await.status,
        StatusCode::CREATED
    );

    // An impostor: "payment-service" resolved to inventory-service's
    // address. Over mTLS the server proves it is spiffe://shop/inventory-service,
    // so the call fails before any request is sent.
    let impostor = msp_discovery::MemoryRegistry::new();
    let inventory = system
        .service_addr("inventory-service")
        .expect("inventory runs");
    impostor
        .insert(
            msp_core::Instance::parse("payment-service", &inventory.to_string()).expect("instance"),
        )
        .expect("registered");
    let fooled = ServiceClient::with_identity(&impostor, "payment-service", Some(&order))
        .expect("client")
        .send(Method::GET, "/charges/mtls-3:payment", None, None)
        .await;
    assert!(fooled.is_err(), "an impostor must not answer: {fooled:?}");

    system.stop().await.expect("system stops");
}

/// The order page BFF (`aggregates:` in gateway.yaml): one request, three
/// services, shaped per client type — web JSON, compact mobile JSON, CBOR
/// for IoT — and a partial answer when the optional stock lookup fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_page_bff_composes_three_services_per_client_type() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut system = start(&dir).await;
    let gw = Http::new(system.gateway_url());
    let (status, placed) = gw
        .post(
            "/api/orders",
            Some("demo-key"),
            json!({"sku": "book-42", "quantity": 1, "address": "1 Main St"}),
        )
        .await
        .expect("order placed");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["id"].as_str().expect("an id").to_owned();
    let (_, done) = gw
        .get(&format!("/api/orders/{id}?wait_ms=10000"), Some("demo-key"))
        .await
        .expect("order read");
    assert_eq!(done["status"], "completed", "{done}");

    let page = format!("/bff/orders/{id}");
    assert_eq!(gw.get(&page, None).await.expect("answer").0, 401);
    let (status, web) = gw.get(&page, Some("demo-key")).await.expect("web page");
    assert_eq!(status, StatusCode::OK, "{web}");
    assert_eq!(web["id"], id.as_str());
    assert_eq!(web["product"]["name"], "The Hitchhiker's Guide");
    assert!(web["stock"]["available"].is_number(), "{web}");
    assert!(web["history"].is_array(), "web gets the step log: {web}");
    // Another caller (a user's login) gets no page for demo-app's order:
    // the aggregate forwards `x-consumer` and order-service checks the owner.
    let token = login(&gw).await;
    let (status, other) = gw.get_bearer(&page, &token).await.expect("answer");
    assert_ne!(status, StatusCode::OK, "{other}");
    assert!(other.get("product").is_none(), "{other}");

    let mobile = raw(&system, &page, &[("x-client-type", "mobile")]).await;
    let mobile: Value = serde_json::from_slice(&mobile.1).expect("mobile JSON");
    assert!(mobile.get("history").is_none(), "{mobile}");
    assert!(mobile["product"].get("description").is_none(), "{mobile}");
    assert_eq!(mobile["product"]["name"], "The Hitchhiker's Guide");

    let (headers, body) = raw(&system, &page, &[("accept", "application/cbor")]).await;
    assert_eq!(headers["content-type"], "application/cbor");
    let iot: Value = ciborium::from_reader(body.as_slice()).expect("CBOR");
    assert_eq!(iot, json!({"id": id, "status": "completed"}));

    // inventory-service gone: the page still comes, marked partial.
    system
        .stop_service("inventory-service")
        .await
        .expect("inventory stops");
    let (headers, body) = raw(&system, &page, &[]).await;
    assert_eq!(headers["x-partial"], "true");
    let partial: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(partial["_partial"]["failed"], json!(["stock"]), "{partial}");
    assert_eq!(partial["status"], "completed");
    system.stop().await.expect("system stops");
}

/// A GET through the gateway with the demo key and `headers`: the answer's
/// headers and raw body.
async fn raw(system: &System, path: &str, headers: &[(&str, &str)]) -> (http::HeaderMap, Vec<u8>) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut req = http::Request::get(format!("{}{path}", system.gateway_url()))
        .header("x-api-key", "demo-key");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Empty::new()).expect("request"))
        .await
        .expect("gateway answers");
    assert_eq!(res.status(), StatusCode::OK);
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.headers, body)
}
