//! The inbox table operations for SQLite and PostgreSQL.

use crate::db::{BackendConn, SqlConnection, unix_micros};
use futures_util::future::BoxFuture;
use std::time::SystemTime;
use uuid::Uuid;

/// Records processed messages per consumer; see the
/// [module documentation](super).
///
/// # Example
///
/// ```
/// use msp_saga::inbox::Inbox;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// msp_saga::migrate_sqlite(&pool).await?;
/// let id = uuid::Uuid::now_v7();
///
/// let mut tx = pool.begin().await?;
/// assert!(Inbox::try_record(&mut tx, "billing", id).await?); // first time: do the effect
/// tx.commit().await?;
///
/// let mut tx = pool.begin().await?;
/// assert!(!Inbox::try_record(&mut tx, "billing", id).await?); // duplicate: skip
/// assert!(Inbox::try_record(&mut tx, "shipping", id).await?); // another consumer
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Inbox;

/// What [`Inbox::handle`] did with one delivery of a message: processed it
/// (the effect ran) or recognised it as a duplicate (nothing ran).
///
/// # Example
///
/// ```
/// use msp_saga::inbox::Delivery;
///
/// let first: Delivery<u32> = Delivery::Processed(7);
/// assert_eq!(first.processed(), Some(7));
/// assert!(Delivery::<u32>::Duplicate.is_duplicate());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<T> {
    /// First delivery: the effect ran and committed with the record.
    Processed(T),
    /// Already processed by this consumer: nothing ran.
    Duplicate,
}

impl<T> Delivery<T> {
    /// The effect's result, if it ran.
    pub fn processed(self) -> Option<T> {
        match self {
            Delivery::Processed(t) => Some(t),
            Delivery::Duplicate => None,
        }
    }

    /// Whether the delivery was a duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Delivery::Duplicate)
    }
}

/// Why [`Inbox::handle`] failed; the transaction was rolled back, so the
/// message counts as not processed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError<E> {
    /// Beginning, recording or committing failed.
    #[error("inbox database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The effect failed.
    #[error("message handler failed: {0}")]
    Handler(#[source] E),
}

impl Inbox {
    /// Records that `consumer` processed `message_id`, through `conn` (the
    /// transaction that applies the effect). `true`: first time, apply the
    /// effect; `false`: already processed (by a committed transaction), skip.
    pub async fn try_record<C: SqlConnection + ?Sized>(
        conn: &mut C,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let now = unix_micros(SystemTime::now());
        let inserted = match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlx::query(
                "INSERT INTO msp_inbox (consumer, message_id, processed_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(message_id)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected(),
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => sqlx::query(
                "INSERT INTO msp_inbox (consumer, message_id, processed_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(message_id)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected(),
        };
        Ok(inserted == 1)
    }

    /// Whether `consumer` has processed `message_id` (committed).
    pub async fn contains<C: SqlConnection + ?Sized>(
        conn: &mut C,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let n: i64 = match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM msp_inbox WHERE consumer = ?1 AND message_id = ?2",
                )
                .bind(consumer)
                .bind(message_id)
                .fetch_one(c)
                .await?
            }
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM msp_inbox WHERE consumer = $1 AND message_id = $2",
                )
                .bind(consumer)
                .bind(message_id)
                .fetch_one(c)
                .await?
            }
        };
        Ok(n > 0)
    }

    /// Deletes records processed before `before`; returns how many.
    pub async fn purge<C: SqlConnection + ?Sized>(
        conn: &mut C,
        before: SystemTime,
    ) -> Result<u64, sqlx::Error> {
        let before = unix_micros(before);
        Ok(match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlx::query("DELETE FROM msp_inbox WHERE processed_at < ?1")
                .bind(before)
                .execute(c)
                .await?
                .rows_affected(),
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => {
                sqlx::query("DELETE FROM msp_inbox WHERE processed_at < $1")
                    .bind(before)
                    .execute(c)
                    .await?
                    .rows_affected()
            }
        })
    }

    /// Handles one delivery exactly once per consumer: begins a transaction
    /// on `pool`, records the message, runs `effect` in the same
    /// transaction and commits. A duplicate commits nothing and skips the
    /// effect; an effect error rolls everything back (the message can be
    /// delivered again).
    ///
    /// The effect receives the transaction; return a boxed future
    /// (`|tx| Box::pin(async move { .. })`) so it can borrow it.
    pub async fn handle<DB, T, E, F>(
        pool: &sqlx::Pool<DB>,
        consumer: &str,
        message_id: Uuid,
        effect: F,
    ) -> Result<Delivery<T>, InboxError<E>>
    where
        DB: sqlx::Database,
        sqlx::Transaction<'static, DB>: SqlConnection,
        F: for<'c> FnOnce(&'c mut sqlx::Transaction<'static, DB>) -> BoxFuture<'c, Result<T, E>>,
    {
        let mut tx = pool.begin().await?;
        if !Inbox::try_record(&mut tx, consumer, message_id).await? {
            tx.rollback().await?;
            return Ok(Delivery::Duplicate);
        }
        let value = effect(&mut tx).await.map_err(InboxError::Handler)?;
        tx.commit().await?;
        Ok(Delivery::Processed(value))
    }
}
