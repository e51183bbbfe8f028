//! notification-service: consumes order events from order-service's outbox
//! (the in-process bus its relay publishes to) through an idempotent inbox,
//! and keeps a feed.
//!
//! - `GET /feed` (`?order=ID` to filter): the feed, oldest first.
//! - `GET /feed/stream`: the feed as Server-Sent Events, new entries as
//!   they arrive (`event:` the topic, `data:` the entry as JSON).
//!
//! A message delivered twice (the relay is at least once) is recorded once:
//! the inbox row and the feed row commit in one transaction.
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
//! let mut feed = system.subscribe_feed();
//! let gw = ecommerce::demo::Http::new(system.gateway_url());
//! let order = serde_json::json!({"sku": "tea-3", "quantity": 1, "address": "1 Main St"});
//! gw.post("/api/orders", Some("demo-key"), order).await?;
//! assert_eq!(feed.recv().await?.topic, "order.placed");
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

use super::{ApiError, now_ms};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use msp_saga::inbox::{Delivery, Inbox};
use msp_saga::outbox::OutboxMessage;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// The inbox consumer name.
pub const CONSUMER: &str = "notification-service";

/// One entry of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, sqlx::FromRow)]
pub struct FeedEntry {
    /// The outbox message id it came from.
    pub message_id: String,
    /// `order.placed`, `order.completed`, `order.compensated`…
    pub topic: String,
    /// The order it is about.
    pub order_id: String,
    /// The event's payload, as JSON text.
    pub payload: String,
}

/// Creates the feed table (the inbox table comes from msp-saga's
/// migrations).
pub async fn migrate(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS feed (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, \
         topic TEXT NOT NULL, order_id TEXT NOT NULL, payload TEXT NOT NULL, at INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The consumer: records each message of `bus` once (inbox + feed row in
/// one transaction) and announces new entries on `live`. Returns when the
/// bus closes.
pub async fn consume(
    db: SqlitePool,
    mut bus: broadcast::Receiver<Arc<OutboxMessage>>,
    live: broadcast::Sender<FeedEntry>,
) {
    loop {
        let msg = match bus.recv().await {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "notification-service fell behind the bus");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match handle(&db, &msg).await {
            Ok(Some(entry)) => {
                let _no_listener_is_fine = live.send(entry);
            }
            Ok(None) => tracing::debug!(id = %msg.id, "duplicate delivery skipped"),
            Err(error) => tracing::error!(%error, id = %msg.id, "could not record a notification"),
        }
    }
}

/// Records one message through the inbox; `None` for a duplicate.
pub async fn handle(
    db: &SqlitePool,
    msg: &OutboxMessage,
) -> Result<Option<FeedEntry>, msp_core::BoxError> {
    let payload: serde_json::Value = msg.payload_json()?;
    let entry = FeedEntry {
        message_id: msg.id.to_string(),
        topic: msg.topic.clone(),
        order_id: payload["order_id"].as_str().unwrap_or_default().to_owned(),
        payload: payload.to_string(),
    };
    let row = entry.clone();
    let delivery = Inbox::handle(db, CONSUMER, msg.id, move |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO feed (message_id, topic, order_id, payload, at) VALUES (?, ?, ?, ?, ?)")
                .bind(&row.message_id)
                .bind(&row.topic)
                .bind(&row.order_id)
                .bind(&row.payload)
                .bind(now_ms())
                .execute(&mut **tx)
                .await
        })
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(match delivery {
        Delivery::Processed(_) => Some(entry),
        Delivery::Duplicate => None,
    })
}

#[derive(Clone)]
struct Ctx {
    db: SqlitePool,
    live: broadcast::Sender<FeedEntry>,
}

/// The service's routes; `live` announces new entries to SSE clients.
pub fn routes(db: SqlitePool, live: broadcast::Sender<FeedEntry>) -> Router {
    Router::new()
        .route("/feed", get(feed))
        .route("/feed/stream", get(stream))
        .with_state(Ctx { db, live })
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    order: Option<String>,
}

async fn feed(
    State(ctx): State<Ctx>,
    Query(q): Query<FeedQuery>,
) -> Result<Json<Vec<FeedEntry>>, ApiError> {
    let rows = match q.order {
        Some(order) => sqlx::query_as(
            "SELECT message_id, topic, order_id, payload FROM feed WHERE order_id = ? ORDER BY seq",
        )
        .bind(order)
        .fetch_all(&ctx.db)
        .await?,
        None => {
            sqlx::query_as(
                "SELECT message_id, topic, order_id, payload FROM feed ORDER BY seq DESC LIMIT 200",
            )
            .fetch_all(&ctx.db)
            .await?
        }
    };
    Ok(Json(rows))
}

async fn stream(State(ctx): State<Ctx>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = BroadcastStream::new(ctx.live.subscribe()).filter_map(|entry| async move {
        let entry = entry.ok()?;
        let data = serde_json::to_string(&entry).ok()?;
        Some(Ok(Event::default().event(entry.topic.clone()).data(data)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
