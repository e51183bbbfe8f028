//! order-service's event-sourced history through the gateway: the events
//! of a completed and of a compensated order, in order; the `order_view`
//! read model equal to a fold of the events; a rebuild of the projection
//! from the first event equal to the live view; orders per caller.

use ecommerce::demo::Http;
use ecommerce::services::order::OrderView;
use ecommerce::services::order::history::{Order, OrderEvent, OrderViewProjection};
use ecommerce::{System, SystemConfig};
use http::StatusCode;
use msp_saga::eventstore::{Aggregate, EventStore, SqliteEventStore, fold_aggregate};
use serde_json::{Value, json};

/// A row of `order_view`: id, owner, status, stock_reserved, paid,
/// shipped, failure, version.
type ViewRow = (String, String, String, i64, i64, i64, Option<String>, i64);

async fn start(dir: &tempfile::TempDir) -> System {
    System::start(SystemConfig {
        data_dir: dir.path().to_path_buf(),
        gateway_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SystemConfig::default()
    })
    .await
    .expect("system starts")
}

/// Places an order with the demo key and long-polls it to its end.
async fn place(gw: &Http, key: &str, sku: &str, address: &str) -> OrderView {
    let body = json!({"sku": sku, "quantity": 2, "address": address});
    let (status, placed) = gw.post("/api/orders", Some(key), body).await.expect("post");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["id"].as_str().expect("id").to_owned();
    for _ in 0..6 {
        let (status, view) = gw
            .get(&format!("/api/orders/{id}?wait_ms=10000"), Some(key))
            .await
            .expect("get");
        assert_eq!(status, StatusCode::OK, "{view}");
        if view["status"] != "pending" {
            return serde_json::from_value(view).expect("an OrderView");
        }
    }
    panic!("order {id} still pending after 60 s");
}

/// The order's events, as `/history` answers them.
async fn history(gw: &Http, key: &str, id: &str) -> Vec<Value> {
    let (status, events) = gw
        .get(&format!("/api/orders/{id}/history"), Some(key))
        .await
        .expect("history");
    assert_eq!(status, StatusCode::OK, "{events}");
    events.as_array().expect("an array").clone()
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect()
}

/// The aggregate folded from the `/history` events.
fn fold(events: &[Value]) -> Order {
    let mut order = Order::default();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["version"], n + 1, "versions 1, 2, 3, …: {e}");
        order.apply(serde_json::from_value::<OrderEvent>(e.clone()).expect("an OrderEvent"));
    }
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_order_records_its_events_in_order_and_the_view_is_their_fold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let gw = Http::new(system.gateway_url());
    let done = place(&gw, "demo-key", "book-42", "1 Main St").await;
    assert_eq!(done.order.status, "completed");

    let events = history(&gw, "demo-key", &done.id).await;
    assert_eq!(
        types(&events),
        ["placed", "stock_reserved", "paid", "shipped", "completed"]
    );
    assert_eq!(events[0]["owner"], "demo-app", "the API key's consumer");
    assert_eq!(events[0]["cents"], 2 * 1_999);
    let at: Vec<i64> = events
        .iter()
        .map(|e| e["at"].as_i64().expect("at"))
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");

    let folded = fold(&events);
    assert_eq!(done.order, folded, "order_view is the fold of the events");
    assert_eq!(
        (
            folded.stock_reserved,
            folded.paid,
            folded.shipped,
            folded.version
        ),
        (true, true, true, 5)
    );
    // The saga's step log is still there for the BFF and the demo.
    assert!(
        done.history.iter().any(|l| l.contains("shipping")),
        "{:?}",
        done.history
    );
    system.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_shipment_records_the_failure_then_the_compensations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let gw = Http::new(system.gateway_url());
    let failed = place(&gw, "demo-key", "lamp-7", "FAIL street").await;
    assert_eq!(failed.order.status, "compensated");

    let events = history(&gw, "demo-key", &failed.id).await;
    assert_eq!(
        types(&events),
        [
            "placed",
            "stock_reserved",
            "paid",
            "failed",
            "refunded",
            "stock_released",
            "compensated"
        ]
    );
    assert_eq!(events[3]["step"], "shipping");
    let folded = fold(&events);
    assert_eq!(failed.order, folded);
    assert_eq!(
        (folded.stock_reserved, folded.paid, folded.shipped),
        (false, false, false),
        "everything undone"
    );
    assert!(
        folded
            .failure
            .as_deref()
            .is_some_and(|f| f.starts_with("shipping: ")),
        "{folded:?}"
    );
    system.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_rebuilt_from_the_first_event_equals_the_live_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let gw = Http::new(system.gateway_url());
    let mut ids = Vec::new();
    for (sku, address) in [
        ("book-42", "1 Main St"),
        ("lamp-7", "FAIL st"),
        ("tea-3", "2 High St"),
    ] {
        ids.push(place(&gw, "demo-key", sku, address).await.id);
    }

    let db = ecommerce::platform::open_db(dir.path(), "orders.db")
        .await
        .expect("orders.db");
    let rows = |db: sqlx::SqlitePool| async move {
        let rows: Vec<ViewRow> = sqlx::query_as(
            "SELECT id, owner, status, stock_reserved, paid, shipped, failure, version \
             FROM order_view ORDER BY id",
        )
        .fetch_all(&db)
        .await
        .expect("order_view");
        rows
    };
    let live = rows(db.clone()).await;
    assert_eq!(live.len(), 3, "{live:?}");

    let store = SqliteEventStore::new(db.clone());
    let mut projection = OrderViewProjection;
    store
        .reset_projection(&mut projection)
        .await
        .expect("reset");
    assert!(
        rows(db.clone()).await.is_empty(),
        "the reset emptied the view"
    );
    while store
        .run_projection(&mut projection, 4)
        .await
        .expect("replay")
        .processed
        == 4
    {}
    assert_eq!(
        rows(db.clone()).await,
        live,
        "the replay rebuilt the same view"
    );

    // And each row equals the aggregate folded from its stream.
    for id in &ids {
        let folded = fold_aggregate::<Order, _>(&store, &format!("order-{id}"))
            .await
            .expect("fold");
        let (_, view) = gw
            .get(&format!("/api/orders/{id}"), Some("demo-key"))
            .await
            .expect("get");
        let view: OrderView = serde_json::from_value(view).expect("an OrderView");
        assert_eq!(view.order, folded.state);
    }
    system.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_lists_and_reads_only_its_own_orders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = start(&dir).await;
    let gw = Http::new(system.gateway_url());
    let mine = place(&gw, "demo-key", "mug-1", "3 Low St").await;

    let creds = json!({"email": "eve@example.com", "password": "correct horse"});
    gw.post("/api/auth/signup", None, creds.clone())
        .await
        .expect("signup");
    let (_, login) = gw
        .post("/api/auth/login", None, creds)
        .await
        .expect("login");
    let eve = login["access_token"].as_str().expect("token");
    let (status, placed) = gw
        .post_bearer(
            "/api/orders",
            eve,
            json!({"sku": "tea-3", "quantity": 1, "address": "4 Elm St"}),
        )
        .await
        .expect("order");
    assert_eq!(status, StatusCode::CREATED, "{placed}");

    let (_, demo_list) = gw.get("/api/orders", Some("demo-key")).await.expect("list");
    let ids: Vec<&str> = demo_list
        .as_array()
        .expect("array")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [mine.id.as_str()]);
    let (_, eve_list) = gw.get_bearer("/api/orders", eve).await.expect("list");
    assert_eq!(eve_list.as_array().map(Vec::len), Some(1), "{eve_list}");
    assert_eq!(eve_list[0]["owner"], "eve@example.com");

    // Eve cannot read the demo client's order or its history.
    for path in [
        format!("/api/orders/{}", mine.id),
        format!("/api/orders/{}/history", mine.id),
    ] {
        let (status, _) = gw.get_bearer(&path, eve).await.expect("answer");
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    system.stop().await.expect("stops");
}

/// A data dir of the first cut (orders in an `orders` status table) is
/// carried over: each order becomes a stream (`placed` and its end), the
/// view shows it, and the old table is renamed so the import runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_of_the_first_cuts_status_table_are_imported_as_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = ecommerce::platform::open_db(dir.path(), "orders.db")
        .await
        .expect("orders.db");
    sqlx::query(
        "CREATE TABLE orders (id TEXT PRIMARY KEY, sku TEXT NOT NULL, \
         quantity INTEGER NOT NULL, cents INTEGER NOT NULL, address TEXT NOT NULL, \
         status TEXT NOT NULL, created_at INTEGER NOT NULL)",
    )
    .execute(&db)
    .await
    .expect("the first cut's table");
    let old = [
        ("01900000-0000-7000-8000-000000000001", "completed"),
        ("01900000-0000-7000-8000-000000000002", "compensated"),
    ];
    for (n, (id, status)) in old.iter().enumerate() {
        sqlx::query("INSERT INTO orders VALUES (?, 'mug-1', 1, 1250, '1 Old St', ?, ?)")
            .bind(id)
            .bind(status)
            .bind(1_700_000_000_000_i64 + i64::try_from(n).expect("small"))
            .execute(&db)
            .await
            .expect("an old order");
    }
    db.close().await;

    for _ in 0..2 {
        // Twice: the second start finds nothing left to import.
        let system = start(&dir).await;
        let db = ecommerce::platform::open_db(dir.path(), "orders.db")
            .await
            .expect("orders.db");
        let store = SqliteEventStore::new(db.clone());
        for (id, status) in old {
            let events = store
                .read_stream(&format!("order-{id}"), 0)
                .await
                .expect("stream");
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            assert_eq!(types, ["placed", status]);
            let (owner, shown): (String, String) =
                sqlx::query_as("SELECT owner, status FROM order_view WHERE id = ?")
                    .bind(id)
                    .fetch_one(&db)
                    .await
                    .expect("a view row");
            assert_eq!((owner.as_str(), shown.as_str()), ("legacy", status));
        }
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orders%' ORDER BY name",
        )
        .fetch_all(&db)
        .await
        .expect("tables");
        assert_eq!(tables, ["orders_imported"]);
        system.stop().await.expect("stops");
    }
}
