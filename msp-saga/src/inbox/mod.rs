//! Idempotent inbox: a redelivered message has no second effect.
//!
//! Message delivery is at least once (the [outbox relay](crate::outbox)
//! publishes again after a crash; brokers redeliver unacknowledged
//! messages). A consumer makes its handling idempotent by recording
//! `(consumer, message_id)` in the **same transaction** as the effect:
//!
//! - [`Inbox::try_record`] inserts the pair and answers `true` the first
//!   time, `false` when it is already there (skip the effect). The insert
//!   takes the primary key's lock, so two concurrent deliveries of one
//!   message serialise: the second waits for the first to commit and then
//!   sees it (or, if the first rolled back, records it itself).
//! - [`Inbox::handle`] does begin / record / effect / commit for you.
//!
//! The effect and the record commit together or not at all, so a crash at
//! any point leaves either both or neither. [`Inbox::purge`] deletes old
//! records; keep them longer than any redelivery can take.
//!
//! # Example
//!
//! ```
//! use msp_saga::inbox::{Delivery, Inbox};
//! use uuid::Uuid;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! msp_saga::migrate_sqlite(&pool).await?;
//! sqlx::query("CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER)").execute(&pool).await?;
//! sqlx::query("INSERT INTO stock VALUES ('sku-1', 10)").execute(&pool).await?;
//!
//! let message_id = Uuid::now_v7();
//! for delivery in 0..3 {
//!     let handled = Inbox::handle(&pool, "inventory", message_id, |tx| {
//!         Box::pin(async move {
//!             sqlx::query("UPDATE stock SET qty = qty - 1 WHERE sku = 'sku-1'")
//!                 .execute(&mut **tx)
//!                 .await
//!         })
//!     })
//!     .await?;
//!     assert_eq!(matches!(handled, Delivery::Duplicate), delivery > 0);
//! }
//! let qty: i64 = sqlx::query_scalar("SELECT qty FROM stock").fetch_one(&pool).await?;
//! assert_eq!(qty, 9); // three deliveries, one effect
//! # Ok(()) }
//! ```

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{Delivery, Inbox, InboxError};
