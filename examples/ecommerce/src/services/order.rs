//! order-service: orders, run by the place-order saga (msp-saga, durable in
//! this service's own SQLite file), their history event-sourced with a
//! CQRS read model ([`history`]), and their events through the
//! transactional outbox.
//!
//! - `POST /api/orders` `{sku, quantity, address}`: prices the order from
//!   product-service; in one transaction appends its `placed` event (owner:
//!   the caller the gateway authenticated, `x-consumer`) and an
//!   `order.placed` outbox message; starts the saga — reserve inventory →
//!   charge payment → create shipment, compensated in reverse on failure —
//!   and answers 201 `{id, status: "pending", …}`.
//! - `GET /api/orders/{id}`: the order from the `order_view` read model —
//!   its status (`pending`, `completed`, `compensated`, `stuck`), owner,
//!   totals, flags — and `history`, the saga's step log. With
//!   `?wait_ms=N` (at most 10 000) a pending order is answered when its
//!   saga ends or after N ms (a long poll). Another caller's order is 404.
//! - `GET /api/orders/{id}/history`: the order's events, oldest first
//!   (`{version, type, at, …}`).
//! - `GET /api/orders`: the caller's latest 100 orders, newest first.
//!
//! When the saga ends, a listener on the orchestrator's notices appends
//! the events its step log records and `order.completed` /
//! `order.compensated` to the outbox in one transaction; the projection
//! then brings `order_view` up to date, and the [`Relay`] publishes the
//! message to the in-process bus.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! # let dir = tempfile::tempdir()?;
//! # let config = ecommerce::SystemConfig {
//! #     data_dir: dir.path().to_path_buf(),
//! #     gateway_listen: Some("127.0.0.1:0".parse()?),
//! #     ..Default::default()
//! # };
//! let system = ecommerce::System::start(config).await?;
//! let gw = ecommerce::demo::Http::new(system.gateway_url());
//! let order = serde_json::json!({"sku": "mug-1", "quantity": 1, "address": "1 Main St"});
//! let (status, placed) = gw.post("/api/orders", Some("demo-key"), order).await?;
//! assert_eq!(status, 201);
//! let id = placed["id"].as_str().ok_or("an id")?;
//! let (_, view) = gw.get(&format!("/api/orders/{id}?wait_ms=5000"), Some("demo-key")).await?;
//! assert_eq!(view["status"], "completed");
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

pub mod history;
mod saga;

pub use saga::{Downstream, OrderData, place_order_saga};

use super::ApiError;
use super::now_ms;
use crate::platform::ServiceClient;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use history::{Order, OrderEvent, OrderViewProjection, stream_id, view_columns};
use http::{Method, StatusCode};
use msp_core::BoxError;
use msp_saga::eventstore::Aggregate;
use msp_saga::eventstore::{EventStore, ExpectedVersion, NewEvent, SqliteEventStore};
use msp_saga::outbox::{BroadcastPublisher, Outbox, OutboxMessage, Relay, RelayConfig, RelayWaker};
use msp_saga::saga::{Orchestrator, Saga, SagaNotice, SqliteSagaStore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::SqlitePool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A new order, as the client sends it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewOrder {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// Where to ship.
    pub address: String,
}

/// An order, as the service answers it: its `order_view` row and the
/// saga's step log.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderView {
    /// Its id.
    pub id: String,
    /// The read model's fields (`owner`, `sku`, `quantity`, `cents`,
    /// `address`, `status`, `paid`, `shipped`, …).
    #[serde(flatten)]
    pub order: Order,
    /// The saga's step log, oldest first (empty in lists).
    #[serde(default)]
    pub history: Vec<String>,
}

/// Everything the service's handlers share.
#[derive(Clone)]
pub struct OrderService {
    db: SqlitePool,
    events: SqliteEventStore,
    /// One projection runner at a time in this process.
    view: Arc<tokio::sync::Mutex<OrderViewProjection>>,
    orchestrator: Orchestrator<SqliteSagaStore>,
    saga: Arc<Saga<OrderData>>,
    products: ServiceClient,
    waker: RelayWaker,
    /// Bumped each time the read model moved (long-poll wake-ups).
    finished: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for OrderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderService").finish_non_exhaustive()
    }
}

impl OrderService {
    /// Builds the service on `db`, publishing its outbox to `bus`: creates
    /// the read model, brings it up to date, and starts the saga recovery
    /// loop, the notice listener and the outbox relay (all stop when
    /// `stop` resolves).
    pub async fn start(
        db: SqlitePool,
        downstream: Downstream,
        bus: BroadcastPublisher,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<OrderService, BoxError> {
        history::migrate(&db).await?;
        let saga = place_order_saga(&downstream)?;
        let orchestrator = Orchestrator::builder(SqliteSagaStore::new(db.clone()))
            .register(&saga)
            .build()?;
        let relay = Relay::sqlite(db.clone(), bus).with_config(
            RelayConfig::default()
                .name("order-service")
                .poll_interval(Duration::from_millis(500)),
        );
        let notices = orchestrator.subscribe();
        let svc = OrderService {
            events: SqliteEventStore::new(db.clone()),
            view: Arc::new(tokio::sync::Mutex::new(OrderViewProjection)),
            db,
            orchestrator,
            saga: Arc::new(saga),
            products: downstream.products,
            waker: relay.waker(),
            finished: tokio::sync::watch::Sender::new(0),
        };
        let imported = svc.import_legacy_orders().await?;
        if imported > 0 {
            tracing::info!(
                imported,
                "order-service: orders of the status table now event-sourced"
            );
        }
        svc.catch_up().await?;
        tokio::spawn(follow_sagas(svc.clone(), notices));
        let recovery = svc.orchestrator.spawn_recovery();
        tokio::spawn(async move {
            relay.run(stop).await;
            drop(recovery);
        });
        Ok(svc)
    }

    /// The service's routes.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/api/orders", post(create).get(list))
            .route("/api/orders/", post(create).get(list))
            .route("/api/orders/{id}", get(one))
            .route("/api/orders/{id}/history", get(events))
            .with_state(self)
    }

    /// Applies every event not yet in `order_view`, then wakes long polls.
    pub async fn catch_up(&self) -> Result<(), BoxError> {
        let mut view = self.view.lock().await;
        while self.events.run_projection(&mut *view, 256).await?.processed == 256 {}
        drop(view);
        self.finished.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Rebuilds `order_view` from the first event (CQRS replay).
    pub async fn rebuild_view(&self) -> Result<(), BoxError> {
        self.events
            .reset_projection(&mut *self.view.lock().await)
            .await?;
        self.catch_up().await
    }

    /// Moves the orders of the first cut's `orders` status table (a data
    /// dir from before event sourcing) into event streams: a `placed` event
    /// (owner `legacy`: the table did not know it) and what each one's saga
    /// log records; then renames the table `orders_imported`, so this runs
    /// once. Returns how many orders it imported.
    async fn import_legacy_orders(&self) -> Result<usize, BoxError> {
        let legacy: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'orders'",
        )
        .fetch_optional(&self.db)
        .await?;
        if legacy.is_none() {
            return Ok(0);
        }
        let rows: Vec<LegacyOrder> = sqlx::query_as(
            "SELECT id, sku, quantity, cents, address, status, created_at FROM orders \
             ORDER BY created_at",
        )
        .fetch_all(&self.db)
        .await?;
        let mut imported = 0;
        for LegacyOrder {
            id,
            sku,
            quantity,
            cents,
            address,
            status,
            created_at: at,
        } in rows
        {
            let stream = stream_id(&id);
            if self.events.stream_version(&stream).await? == 0 {
                let placed = OrderEvent::Placed {
                    owner: "legacy".to_owned(),
                    sku,
                    quantity,
                    cents,
                    address,
                    at,
                };
                let event = NewEvent::from_serde(&placed)?;
                self.events
                    .append(&stream, ExpectedVersion::NoStream, vec![event])
                    .await?;
                imported += 1;
            }
            let saga = Uuid::parse_str(&id).ok();
            let logged = match saga {
                Some(saga) => self.orchestrator.get(saga).await?.is_some(),
                None => false,
            };
            match (saga, status.as_str()) {
                (Some(saga), _) if logged => self.record_events(saga, false).await?,
                // No saga log left: the table's status is all there is.
                (_, "completed") => {
                    self.append_end(&stream, OrderEvent::Completed { at })
                        .await?
                }
                (_, "compensated") => {
                    self.append_end(&stream, OrderEvent::Compensated { at })
                        .await?;
                }
                _ => {}
            }
        }
        sqlx::query("ALTER TABLE orders RENAME TO orders_imported")
            .execute(&self.db)
            .await?;
        Ok(imported)
    }

    /// Appends `event` to an imported order's stream of one event.
    async fn append_end(&self, stream: &str, event: OrderEvent) -> Result<(), BoxError> {
        let event = NewEvent::from_serde(&event)?;
        match self
            .events
            .append(stream, ExpectedVersion::Exact(1), vec![event])
            .await
        {
            // Imported by an earlier, interrupted run.
            Err(e) if e.is_concurrency() => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// Appends what saga `id`'s step log records and the stream lacks,
    /// with the outbox message of the end it reached, in one transaction.
    async fn record_saga(&self, id: Uuid) -> Result<(), BoxError> {
        self.record_events(id, true).await?;
        self.waker.wake();
        self.catch_up().await
    }

    /// [`record_saga`](Self::record_saga)'s appends, with the outbox
    /// message only when `announce` (imported orders were announced by
    /// the first cut already).
    async fn record_events(&self, id: Uuid, announce: bool) -> Result<(), BoxError> {
        let Some(record) = self.orchestrator.get(id).await? else {
            return Ok(());
        };
        let derived = history::events_from_log(&record.log);
        let stream = stream_id(&id.to_string());
        let recorded = self.events.read_stream(&stream, 1).await?;
        let recorded: Vec<OrderEvent> = recorded
            .iter()
            .map(|e| e.decode())
            .collect::<Result<_, _>>()?;
        let Some(missing) = history::missing_events(&recorded, &derived) else {
            tracing::warn!(order = %id, "the order's events disagree with its saga log");
            return Ok(());
        };
        if missing.is_empty() {
            return Ok(());
        }
        let version = u64::try_from(recorded.len()).unwrap_or(u64::MAX) + 1;
        let events = missing
            .iter()
            .map(NewEvent::from_serde)
            .collect::<Result<Vec<_>, _>>()?;
        // IMMEDIATE: the write lock first. A deferred transaction reading
        // the stream's version would fail at once (SQLITE_BUSY) if another
        // connection wrote before its first insert.
        let mut tx = self.db.begin_with("BEGIN IMMEDIATE").await?;
        SqliteEventStore::append_in(&mut tx, &stream, ExpectedVersion::Exact(version), events)
            .await?;
        if let Some(end) = history::terminal(missing).filter(|_| announce) {
            let status = end.as_str();
            let msg = OutboxMessage::json(
                format!("order.{status}"),
                &json!({"order_id": id, "status": status}),
            )?
            .with_key(id.to_string());
            Outbox::append(&mut *tx, &msg).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A row of the first cut's `orders` table.
#[derive(sqlx::FromRow)]
struct LegacyOrder {
    id: String,
    sku: String,
    quantity: i64,
    cents: i64,
    address: String,
    status: String,
    created_at: i64,
}

/// Records each finished saga's events (see [`history`]).
async fn follow_sagas(
    svc: OrderService,
    mut notices: tokio::sync::broadcast::Receiver<SagaNotice>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let notice = match notices.recv().await {
            Ok(n) => n,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "order-service missed saga notices");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let Err(error) = svc.record_saga(notice.id).await {
            tracing::error!(%error, order = %notice.id, "could not record the saga's end");
        }
    }
}

/// The caller the gateway authenticated (`x-consumer`: an API key's
/// consumer or a JWT's `sub`).
fn caller(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get("x-consumer")
        .and_then(|v| v.to_str().ok())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "orders are placed through the gateway, with a token or an API key",
            )
        })
}

async fn create(
    State(svc): State<OrderService>,
    headers: HeaderMap,
    Json(req): Json<NewOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let owner = caller(&headers)?;
    if req.quantity <= 0 || req.quantity > 100 || req.address.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_order",
            "quantity 1..=100 and a shipping address",
        ));
    }
    let path = format!("/api/products/{}", req.sku);
    let product = svc
        .products
        .send(Method::GET, &path, None, None)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "catalog_unavailable",
                e.to_string(),
            )
        })?;
    if product.status == StatusCode::NOT_FOUND {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_product",
            format!("no product {}", req.sku),
        ));
    }
    let product: crate::services::product::Product = product.json().map_err(ApiError::internal)?;
    let data = OrderData {
        order_id: Uuid::now_v7(),
        sku: req.sku,
        quantity: req.quantity,
        cents: product.cents * req.quantity,
        address: req.address,
    };
    let id = data.order_id.to_string();
    let placed = OrderEvent::Placed {
        owner,
        sku: data.sku.clone(),
        quantity: data.quantity,
        cents: data.cents,
        address: data.address.clone(),
        at: now_ms(),
    };
    let event = NewEvent::from_serde(&placed).map_err(ApiError::internal)?;
    // IMMEDIATE, as in `record_saga`.
    let mut tx = svc.db.begin_with("BEGIN IMMEDIATE").await?;
    SqliteEventStore::append_in(
        &mut tx,
        &stream_id(&id),
        ExpectedVersion::NoStream,
        vec![event],
    )
    .await
    .map_err(ApiError::internal)?;
    let message = OutboxMessage::json("order.placed", &json!({"order_id": data.order_id, "sku": data.sku, "quantity": data.quantity, "cents": data.cents}))
        .map_err(ApiError::internal)?
        .with_key(id.clone());
    Outbox::append(&mut *tx, &message)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    svc.waker.wake();
    svc.catch_up().await.map_err(ApiError::internal)?;
    // The saga id is the order id: a retried start cannot run it twice.
    svc.orchestrator
        .start_with_id(&svc.saga, data.order_id, data.clone())
        .await
        .map_err(ApiError::internal)?;
    let mut order = Order::default();
    order.apply(placed);
    Ok((
        StatusCode::CREATED,
        Json(OrderView {
            id,
            order,
            history: Vec::new(),
        }),
    ))
}

async fn list(
    State(svc): State<OrderService>,
    headers: HeaderMap,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let owner = caller(&headers)?;
    let orders: Vec<IdAndOrder> = sqlx::query_as(concat!(
        "SELECT id, ",
        view_columns!(),
        " FROM order_view WHERE owner = ? ORDER BY placed_at DESC, id DESC LIMIT 100"
    ))
    .bind(owner)
    .fetch_all(&svc.db)
    .await?;
    Ok(Json(
        orders
            .into_iter()
            .map(|r| OrderView {
                id: r.id,
                order: r.order,
                history: Vec::new(),
            })
            .collect(),
    ))
}

#[derive(sqlx::FromRow)]
struct IdAndOrder {
    id: String,
    #[sqlx(flatten)]
    order: Order,
}

/// `?wait_ms=N`: answer once the order is no longer pending, or after N
/// ms (at most 10 s), whichever comes first (a long poll).
#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

async fn one(
    State(svc): State<OrderService>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WaitQuery>,
) -> Result<Json<OrderView>, ApiError> {
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(10_000));
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = svc.finished.subscribe();
    loop {
        changes.mark_unchanged();
        let order = load(&svc, &headers, &id).await?;
        if order.order.status != "pending" {
            return Ok(Json(order));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return Ok(Json(order)),
        }
    }
}

/// Order `id` from the read model, if the caller may see it: its owner,
/// or a caller without identity headers (the gateway's BFF backends).
async fn view_row(svc: &OrderService, headers: &HeaderMap, id: &str) -> Result<Order, ApiError> {
    let found: Option<Order> = sqlx::query_as(concat!(
        "SELECT ",
        view_columns!(),
        " FROM order_view WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&svc.db)
    .await?;
    let visible = |o: &Order| caller(headers).map_or(true, |c| c == o.owner);
    found
        .filter(visible)
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))
}

async fn load(svc: &OrderService, headers: &HeaderMap, id: &str) -> Result<OrderView, ApiError> {
    let order = view_row(svc, headers, id).await?;
    let mut history = Vec::new();
    if let Ok(saga_id) = Uuid::parse_str(id)
        && let Some(record) = svc
            .orchestrator
            .get(saga_id)
            .await
            .map_err(ApiError::internal)?
    {
        history = record.log.iter().map(ToString::to_string).collect();
    }
    Ok(OrderView {
        id: id.to_owned(),
        order,
        history,
    })
}

/// `GET /api/orders/{id}/history`: the order's events, oldest first.
async fn events(
    State(svc): State<OrderService>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    view_row(&svc, &headers, &id).await?;
    let recorded = svc
        .events
        .read_stream(&stream_id(&id), 0)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        recorded
            .into_iter()
            .map(|e| {
                let mut event = e.payload;
                if let Some(fields) = event.as_object_mut() {
                    fields.insert("version".to_owned(), e.version.into());
                }
                event
            })
            .collect(),
    ))
}
