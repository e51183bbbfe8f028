//! An order's history, event-sourced: the [`OrderEvent`]s of stream
//! `order-{id}` in order-service's SQLite file (msp-saga's
//! [`SqliteEventStore`](msp_saga::eventstore::SqliteEventStore)), the [`Order`] aggregate folded from them, and
//! the `order_view` table — the read model the API answers from — kept up
//! by the [`OrderViewProjection`].
//!
//! `placed` is appended when the order is taken, in the transaction that
//! also writes `order.placed` to the outbox. When the saga ends, the rest
//! comes from its step log ([`events_from_log`]): `stock_reserved`, `paid`,
//! `shipped`; on a failure `failed` (the step and why), then the
//! compensations (`refunded`, `stock_released`); then `completed`,
//! `compensated` or `stuck` (and `resolved` when an operator resolves a
//! stuck order later). [`missing_events`] appends only what the stream
//! lacks, so recording twice (a redelivered notice, a recovered saga)
//! records once.
//!
//! # Example
//!
//! ```
//! use ecommerce::services::order::history::{Order, OrderEvent};
//! use msp_saga::eventstore::Aggregate;
//! let mut order = Order::default();
//! for event in [
//!     OrderEvent::Placed { owner: "ada@example.com".into(), sku: "mug-1".into(),
//!         quantity: 1, cents: 1_250, address: "1 Main St".into(), at: 1 },
//!     OrderEvent::StockReserved { at: 2 },
//!     OrderEvent::Paid { at: 3 },
//!     OrderEvent::Shipped { at: 4 },
//!     OrderEvent::Completed { at: 5 },
//! ] {
//!     order.apply(event);
//! }
//! assert_eq!((order.status.as_str(), order.shipped, order.updated_at), ("completed", true, 5));
//! ```

use msp_core::BoxError;
use msp_saga::eventstore::{Aggregate, Projection, RecordedEvent};
use msp_saga::saga::{LogEntry, LogEvent, SagaState};
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

/// The name the view's projection keeps its checkpoint under.
pub const PROJECTION: &str = "order_view";

/// The event stream of order `id`.
pub fn stream_id(id: &str) -> String {
    format!("order-{id}")
}

/// What happened to an order. `at`: ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEvent {
    /// The order was taken.
    Placed {
        /// Who placed it (the gateway's `x-consumer`).
        owner: String,
        /// The product.
        sku: String,
        /// How many.
        quantity: i64,
        /// The total, in cents.
        cents: i64,
        /// Where to ship.
        address: String,
        /// When.
        at: i64,
    },
    /// inventory-service reserved the stock.
    StockReserved {
        /// When.
        at: i64,
    },
    /// payment-service charged the total.
    Paid {
        /// When.
        at: i64,
    },
    /// shipping-service created the shipment.
    Shipped {
        /// When.
        at: i64,
    },
    /// A step failed for good; compensations follow.
    Failed {
        /// The step (`inventory`, `payment`, `shipping`).
        step: String,
        /// Why.
        error: String,
        /// When.
        at: i64,
    },
    /// The charge was refunded (compensation).
    Refunded {
        /// When.
        at: i64,
    },
    /// The reservation was released (compensation).
    StockReleased {
        /// When.
        at: i64,
    },
    /// Every step succeeded.
    Completed {
        /// When.
        at: i64,
    },
    /// Every step that ran was undone.
    Compensated {
        /// When.
        at: i64,
    },
    /// A compensation kept failing; an operator must act.
    Stuck {
        /// The step whose compensation failed.
        step: String,
        /// When.
        at: i64,
    },
    /// An operator resolved the stuck order.
    Resolved {
        /// The operator's note.
        note: String,
        /// When.
        at: i64,
    },
}

impl OrderEvent {
    /// When it happened (ms since the Unix epoch).
    pub fn at(&self) -> i64 {
        match self {
            OrderEvent::Placed { at, .. }
            | OrderEvent::StockReserved { at }
            | OrderEvent::Paid { at }
            | OrderEvent::Shipped { at }
            | OrderEvent::Failed { at, .. }
            | OrderEvent::Refunded { at }
            | OrderEvent::StockReleased { at }
            | OrderEvent::Completed { at }
            | OrderEvent::Compensated { at }
            | OrderEvent::Stuck { at, .. }
            | OrderEvent::Resolved { at, .. } => *at,
        }
    }
}

/// An order, folded from its events; also a row of `order_view`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Order {
    /// Who placed it.
    pub owner: String,
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The total, in cents.
    pub cents: i64,
    /// Where to ship.
    pub address: String,
    /// `pending`, `completed`, `compensated`, `stuck` or `resolved`.
    pub status: String,
    /// Whether stock is reserved (and not released).
    pub stock_reserved: bool,
    /// Whether it is paid (and not refunded).
    pub paid: bool,
    /// Whether it shipped.
    pub shipped: bool,
    /// Why it failed, if it did (`shipping: …`).
    pub failure: Option<String>,
    /// When it was placed (ms since the Unix epoch).
    pub placed_at: i64,
    /// When its last event happened.
    pub updated_at: i64,
    /// How many events it has (its stream's version).
    pub version: i64,
}

impl Aggregate for Order {
    type Event = OrderEvent;

    fn apply(&mut self, event: OrderEvent) {
        self.version += 1;
        self.updated_at = event.at();
        match event {
            OrderEvent::Placed {
                owner,
                sku,
                quantity,
                cents,
                address,
                at,
            } => {
                *self = Order {
                    owner,
                    sku,
                    quantity,
                    cents,
                    address,
                    status: "pending".to_owned(),
                    placed_at: at,
                    updated_at: at,
                    version: self.version,
                    ..Order::default()
                };
            }
            OrderEvent::StockReserved { .. } => self.stock_reserved = true,
            OrderEvent::Paid { .. } => self.paid = true,
            OrderEvent::Shipped { .. } => self.shipped = true,
            OrderEvent::Failed { step, error, .. } => {
                self.failure = Some(format!("{step}: {error}"))
            }
            OrderEvent::Refunded { .. } => self.paid = false,
            OrderEvent::StockReleased { .. } => self.stock_reserved = false,
            OrderEvent::Completed { .. } => self.status = "completed".to_owned(),
            OrderEvent::Compensated { .. } => self.status = "compensated".to_owned(),
            OrderEvent::Stuck { .. } => self.status = "stuck".to_owned(),
            OrderEvent::Resolved { .. } => self.status = "resolved".to_owned(),
        }
    }
}

/// The events after `placed` that a saga's step `log` records, in order.
/// A failure counts once: the attempt after which the orchestrator gave up.
pub fn events_from_log(log: &[LogEntry]) -> Vec<OrderEvent> {
    let mut events = Vec::new();
    for entry in log {
        let at = entry.at;
        let event = match &entry.event {
            LogEvent::StepSucceeded { step, .. } => match step.as_str() {
                "inventory" => OrderEvent::StockReserved { at },
                "payment" => OrderEvent::Paid { at },
                "shipping" => OrderEvent::Shipped { at },
                _ => continue,
            },
            LogEvent::StepFailed {
                step,
                error,
                retry_at: None,
                ..
            } => OrderEvent::Failed {
                step: step.clone(),
                error: error.clone(),
                at,
            },
            LogEvent::CompensationSucceeded { step, .. } => match step.as_str() {
                "inventory" => OrderEvent::StockReleased { at },
                "payment" => OrderEvent::Refunded { at },
                _ => continue,
            },
            LogEvent::Completed => OrderEvent::Completed { at },
            LogEvent::Compensated => OrderEvent::Compensated { at },
            LogEvent::Stuck { step } => OrderEvent::Stuck {
                step: step.clone(),
                at,
            },
            LogEvent::Resolved { note } => OrderEvent::Resolved {
                note: note.clone(),
                at,
            },
            _ => continue,
        };
        events.push(event);
    }
    events
}

/// The terminal state the events after `placed` reach, if any.
pub fn terminal(events: &[OrderEvent]) -> Option<SagaState> {
    events.iter().rev().find_map(|e| match e {
        OrderEvent::Completed { .. } => Some(SagaState::Completed),
        OrderEvent::Compensated { .. } => Some(SagaState::Compensated),
        OrderEvent::Stuck { .. } => Some(SagaState::Stuck),
        OrderEvent::Resolved { .. } => Some(SagaState::Resolved),
        _ => None,
    })
}

/// What of `derived` (the events after `placed`, from the saga's log) the
/// stream does not have yet, given the events after `placed` it has:
/// `None` when they disagree (then nothing is appended).
pub fn missing_events<'a>(
    recorded: &[OrderEvent],
    derived: &'a [OrderEvent],
) -> Option<&'a [OrderEvent]> {
    derived
        .starts_with(recorded)
        .then(|| &derived[recorded.len()..])
}

/// Creates `order_view`, the read model.
pub async fn migrate(db: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS order_view (id TEXT PRIMARY KEY, owner TEXT NOT NULL, \
         sku TEXT NOT NULL, quantity INTEGER NOT NULL, cents INTEGER NOT NULL, \
         address TEXT NOT NULL, status TEXT NOT NULL, stock_reserved INTEGER NOT NULL, \
         paid INTEGER NOT NULL, shipped INTEGER NOT NULL, failure TEXT, \
         placed_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS order_view_owner ON order_view (owner, placed_at DESC)",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The columns of `order_view` an [`Order`] is read from (a macro, so
/// queries stay `&'static str` literals through `concat!`).
macro_rules! view_columns {
    () => {
        "owner, sku, quantity, cents, address, status, stock_reserved, paid, shipped, \
         failure, placed_at, updated_at, version"
    };
}
pub(crate) use view_columns;

/// Keeps `order_view` in step with the order streams: each event is
/// applied to its order's row, in the transaction that moves the
/// projection's checkpoint.
#[derive(Debug, Default)]
pub struct OrderViewProjection;

impl Projection<SqliteConnection> for OrderViewProjection {
    fn name(&self) -> &str {
        PROJECTION
    }

    async fn apply(
        &mut self,
        tx: &mut SqliteConnection,
        event: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let Some(id) = event.stream_id.strip_prefix("order-") else {
            return Ok(());
        };
        let decoded: OrderEvent = event.decode()?;
        let mut order: Order = sqlx::query_as(concat!(
            "SELECT ",
            view_columns!(),
            " FROM order_view WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_default();
        order.apply(decoded);
        sqlx::query(concat!(
            "INSERT OR REPLACE INTO order_view (id, ",
            view_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(id)
        .bind(&order.owner)
        .bind(&order.sku)
        .bind(order.quantity)
        .bind(order.cents)
        .bind(&order.address)
        .bind(&order.status)
        .bind(order.stock_reserved)
        .bind(order.paid)
        .bind(order.shipped)
        .bind(&order.failure)
        .bind(order.placed_at)
        .bind(order.updated_at)
        .bind(order.version)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query("DELETE FROM order_view").execute(tx).await?;
        Ok(())
    }
}
