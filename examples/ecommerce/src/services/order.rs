//! order-service: orders, run by the place-order saga (msp-saga, durable in
//! this service's own SQLite file), with their events through the
//! transactional outbox.
//!
//! - `POST /api/orders` `{sku, quantity, address}`: prices the order from
//!   product-service, stores it with an `order.placed` outbox event in one
//!   transaction, starts the saga — reserve inventory → charge payment →
//!   create shipment, compensated in reverse on failure — and answers 201
//!   `{id, status: "pending", …}`.
//! - `GET /api/orders/{id}`: the order, its status (`pending`, `completed`,
//!   `compensated`, `stuck`) and its history (the saga's step log). With
//!   `?wait_ms=N` (at most 10 000) a pending order is answered when its
//!   saga ends or after N ms (a long poll: nothing to poll in a loop).
//! - `GET /api/orders`: the latest 100 orders (not yet per user).
//!
//! When the saga ends, a listener on the orchestrator's notices updates the
//! order and appends `order.completed` / `order.compensated` to the outbox
//! in one transaction; the [`Relay`] publishes it to the in-process bus.
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

use super::ApiError;
use super::now_ms;
use crate::platform::ServiceClient;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{Method, StatusCode};
use msp_core::BoxError;
use msp_core::backoff::Backoff;
use msp_saga::outbox::{BroadcastPublisher, Outbox, OutboxMessage, Relay, RelayConfig, RelayWaker};
use msp_saga::saga::{
    IdempotencyKey, Orchestrator, Saga, SagaNotice, SagaState, SqliteSagaStore, StepContext,
    StepError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::SqlitePool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// What the saga carries.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderData {
    /// The order id (also the saga id).
    pub order_id: Uuid,
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The total, in cents.
    pub cents: i64,
    /// Where to ship.
    pub address: String,
}

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

/// An order, as the service answers it.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct OrderView {
    /// Its id.
    pub id: String,
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The total, in cents.
    pub cents: i64,
    /// Where to ship.
    pub address: String,
    /// `pending`, `completed`, `compensated` or `stuck`.
    pub status: String,
    /// The saga's step log, oldest first (empty in lists).
    #[sqlx(skip)]
    #[serde(default)]
    pub history: Vec<String>,
}

/// Everything the service's handlers share.
#[derive(Clone)]
pub struct OrderService {
    db: SqlitePool,
    orchestrator: Orchestrator<SqliteSagaStore>,
    saga: Arc<Saga<OrderData>>,
    products: ServiceClient,
    waker: RelayWaker,
    /// Bumped each time a saga's end is recorded (long-poll wake-ups).
    finished: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for OrderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderService").finish_non_exhaustive()
    }
}

/// The clients the saga's steps call.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// product-service (prices).
    pub products: ServiceClient,
    /// inventory-service.
    pub inventory: ServiceClient,
    /// payment-service.
    pub payment: ServiceClient,
    /// shipping-service.
    pub shipping: ServiceClient,
}

/// Maps a downstream answer to a step result: 2xx is success, 4xx a
/// permanent failure (compensate), 5xx or no answer retryable.
fn outcome(res: Result<crate::platform::Reply, BoxError>) -> Result<serde_json::Value, StepError> {
    match res {
        Ok(r) if r.status.is_success() => r.json().map_err(StepError::permanent),
        Ok(r) if r.status.is_client_error() => Err(StepError::permanent(format!(
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))),
        Ok(r) => Err(StepError::retryable(format!(
            "upstream answered {}",
            r.status
        ))),
        Err(e) => Err(StepError::retryable(e)),
    }
}

/// The key a step was (or would have been) sent with: compensations name
/// the forward call they undo by its key.
fn forward_key(ctx: &StepContext<OrderData>) -> Result<String, StepError> {
    IdempotencyKey::new(ctx.saga_id(), ctx.step(), false)
        .map(|k| k.as_str().to_owned())
        .ok_or_else(|| StepError::permanent("bad step name"))
}

/// The place-order saga: inventory → payment → shipping.
pub fn place_order_saga(d: &Downstream) -> Result<Saga<OrderData>, BoxError> {
    // Six retries, 0.1 s doubling to 1 s (3.5 s in all): longer than the
    // clients' breakers stay open after a first trip (2 s), so a step
    // retried past an open breaker gets through once the service is back.
    let retry = Backoff::builder()
        .initial(Duration::from_millis(100))
        .max_delay(Duration::from_secs(1))
        .max_attempts(6)
        .jitter(msp_core::backoff::Jitter::None)
        .build()?;
    let (inv1, inv2, pay1, pay2, ship) = (
        d.inventory.clone(),
        d.inventory.clone(),
        d.payment.clone(),
        d.payment.clone(),
        d.shipping.clone(),
    );
    Ok(Saga::<OrderData>::builder("place-order")
        .step("inventory", move |ctx: StepContext<OrderData>| {
            let c = inv1.clone();
            async move {
                let body = json!({"sku": ctx.data().sku, "quantity": ctx.data().quantity});
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(
                    c.send(Method::POST, "/reservations", Some(&key), Some(&body))
                        .await,
                )
            }
        })
        .compensate(move |ctx| {
            let c = inv2.clone();
            async move {
                let path = format!("/reservations/{}/release", forward_key(&ctx)?);
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(c.send(Method::POST, &path, Some(&key), None).await).map(drop)
            }
        })
        .retry(retry.clone())
        .timeout(Duration::from_secs(5))
        .step("payment", move |ctx: StepContext<OrderData>| {
            let c = pay1.clone();
            async move {
                let body = json!({"order_id": ctx.data().order_id, "cents": ctx.data().cents});
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(
                    c.send(Method::POST, "/charges", Some(&key), Some(&body))
                        .await,
                )
            }
        })
        .compensate(move |ctx| {
            let c = pay2.clone();
            async move {
                let path = format!("/charges/{}/refund", forward_key(&ctx)?);
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(c.send(Method::POST, &path, Some(&key), None).await).map(drop)
            }
        })
        .retry(retry.clone())
        .timeout(Duration::from_secs(5))
        .step("shipping", move |ctx: StepContext<OrderData>| {
            let c = ship.clone();
            async move {
                let body = json!({"order_id": ctx.data().order_id, "address": ctx.data().address});
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(
                    c.send(Method::POST, "/shipments", Some(&key), Some(&body))
                        .await,
                )
            }
        })
        .retry(retry)
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// Creates the orders table (the saga and outbox tables come from
/// msp-saga's migrations, run by [`open_db`](crate::platform::open_db)).
pub async fn migrate(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, sku TEXT NOT NULL, \
         quantity INTEGER NOT NULL, cents INTEGER NOT NULL, address TEXT NOT NULL, \
         status TEXT NOT NULL, created_at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    Ok(())
}

impl OrderService {
    /// Builds the service on `db`, publishing its outbox to `bus`: starts
    /// the saga recovery loop, the notice listener and the outbox relay
    /// (all stop when `stop` resolves).
    pub async fn start(
        db: SqlitePool,
        downstream: Downstream,
        bus: BroadcastPublisher,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<OrderService, BoxError> {
        migrate(&db).await?;
        let saga = place_order_saga(&downstream)?;
        let orchestrator = Orchestrator::builder(SqliteSagaStore::new(db.clone()))
            .register(&saga)
            .build()?;
        let relay = Relay::sqlite(db.clone(), bus).with_config(
            RelayConfig::default()
                .name("order-service")
                .poll_interval(Duration::from_millis(500)),
        );
        let waker = relay.waker();
        let notices = orchestrator.subscribe();
        let finished = tokio::sync::watch::Sender::new(0);
        tokio::spawn(follow_sagas(
            db.clone(),
            notices,
            waker.clone(),
            finished.clone(),
        ));
        let recovery = orchestrator.spawn_recovery();
        tokio::spawn(async move {
            relay.run(stop).await;
            drop(recovery);
        });
        Ok(OrderService {
            db,
            orchestrator,
            saga: Arc::new(saga),
            products: downstream.products,
            waker,
            finished,
        })
    }

    /// The service's routes.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/api/orders", post(create).get(list))
            .route("/api/orders/", post(create).get(list))
            .route("/api/orders/{id}", get(one))
            .with_state(self)
    }
}

/// Turns each finished saga into the order's status and an outbox event,
/// in one transaction.
async fn follow_sagas(
    db: SqlitePool,
    mut notices: tokio::sync::broadcast::Receiver<SagaNotice>,
    waker: RelayWaker,
    finished: tokio::sync::watch::Sender<u64>,
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
        let status = match notice.state {
            SagaState::Completed => "completed",
            SagaState::Compensated => "compensated",
            SagaState::Stuck => "stuck",
            _ => continue,
        };
        if let Err(error) = finish(&db, notice.id, status).await {
            tracing::error!(%error, order = %notice.id, "could not record the saga's end");
        }
        waker.wake();
        finished.send_modify(|n| *n += 1);
    }
}

async fn finish(db: &SqlitePool, id: Uuid, status: &str) -> Result<(), BoxError> {
    let mut tx = db.begin().await?;
    let changed = sqlx::query("UPDATE orders SET status = ? WHERE id = ? AND status = 'pending'")
        .bind(status)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    if changed.rows_affected() == 1 {
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

async fn create(
    State(svc): State<OrderService>,
    Json(req): Json<NewOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
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
    let mut tx = svc.db.begin().await?;
    sqlx::query("INSERT INTO orders (id, sku, quantity, cents, address, status, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)")
        .bind(data.order_id.to_string())
        .bind(&data.sku)
        .bind(data.quantity)
        .bind(data.cents)
        .bind(&data.address)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    let placed = OutboxMessage::json("order.placed", &json!({"order_id": data.order_id, "sku": data.sku, "quantity": data.quantity, "cents": data.cents}))
        .map_err(ApiError::internal)?
        .with_key(data.order_id.to_string());
    Outbox::append(&mut *tx, &placed)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    svc.waker.wake();
    // The saga id is the order id: a retried start cannot run it twice.
    svc.orchestrator
        .start_with_id(&svc.saga, data.order_id, data.clone())
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(OrderView {
            id: data.order_id.to_string(),
            sku: data.sku,
            quantity: data.quantity,
            cents: data.cents,
            address: data.address,
            status: "pending".into(),
            history: Vec::new(),
        }),
    ))
}

async fn list(State(svc): State<OrderService>) -> Result<Json<Vec<OrderView>>, ApiError> {
    Ok(Json(
        sqlx::query_as("SELECT id, sku, quantity, cents, address, status FROM orders ORDER BY created_at DESC LIMIT 100")
            .fetch_all(&svc.db)
            .await?,
    ))
}

/// `?wait_ms=N`: answer once the order is no longer pending, or after N
/// ms (at most 10 s), whichever comes first (a long poll).
#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

async fn one(
    State(svc): State<OrderService>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WaitQuery>,
) -> Result<Json<OrderView>, ApiError> {
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(10_000));
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = svc.finished.subscribe();
    loop {
        changes.mark_unchanged();
        let order = load(&svc, &id).await?;
        if order.status != "pending" {
            return Ok(Json(order));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return Ok(Json(order)),
        }
    }
}

async fn load(svc: &OrderService, id: &str) -> Result<OrderView, ApiError> {
    let found: Option<OrderView> =
        sqlx::query_as("SELECT id, sku, quantity, cents, address, status FROM orders WHERE id = ?")
            .bind(id)
            .fetch_optional(&svc.db)
            .await?;
    let mut order = found.ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
    if let Ok(saga_id) = Uuid::parse_str(id)
        && let Some(record) = svc
            .orchestrator
            .get(saga_id)
            .await
            .map_err(ApiError::internal)?
    {
        order.history = record.log.iter().map(ToString::to_string).collect();
    }
    Ok(order)
}
