//! Transactional outbox: messages written in your own transaction, relayed
//! to a broker after commit.
//!
//! Publishing to a broker after a database commit loses the message when the
//! process dies in between (the bug cqrs-es and esrs users hit); publishing
//! before the commit announces changes that may roll back. The outbox pattern
//! closes the gap: [`Outbox::append`] inserts the message **in the same
//! transaction** as the business change, so it exists exactly when the
//! change does; a [`Relay`] then reads committed rows, hands them to a
//! [`Publisher`], and marks them sent.
//!
//! Guarantees of the relay:
//!
//! - **At least once.** A message is marked sent only after the publisher
//!   returned `Ok`; a crash in between publishes it again. Consumers
//!   deduplicate with the [`inbox`](crate::inbox) (or the broker's own
//!   deduplication: the NATS publisher sets `Nats-Msg-Id`).
//! - **Order per key.** Messages with the same [`key`](OutboxMessage::key)
//!   are published one after the other in the order they were appended
//!   (the outbox sequence); message *n + 1* of a key is never handed to the
//!   publisher before message *n* was published or dead-lettered. A message
//!   that keeps failing blocks only its own key. Messages without a key have
//!   no order. Two *concurrent* transactions appending to the same key are
//!   ordered by whichever becomes visible first; if that matters, serialise
//!   such writers (for example lock the aggregate's row before appending).
//! - **Retries with backoff, then dead letters.** A failed publish is
//!   retried after a delay from the relay's [`Backoff`](msp_core::backoff::Backoff)
//!   (per-row `attempts` and `next_attempt_at`); after
//!   [`max_attempts`](RelayConfig::max_attempts) failures, or at once for a
//!   [permanent](PublishError::permanent) error, the row is marked dead with
//!   its last error ([`Outbox::dead_letters`], [`Outbox::requeue`]) and the
//!   key moves on.
//! - **Several relays on PostgreSQL.** Rows are claimed with
//!   `FOR UPDATE SKIP LOCKED` and a lease (`claimed_until`), so relays in
//!   several processes share the work and a dead relay's rows are taken over
//!   when its lease expires. On SQLite run one relay per database file.
//! - **Fenced takeover.** Every claim round tags its rows with a fresh
//!   token (`claim_token`, and the relay's [name](RelayConfig::name) in
//!   `claimed_by`). Right before each publish the relay renews the lease of
//!   its key's rows under that token, and it marks sent, records failures,
//!   dead-letters and releases only rows that still carry it. A relay that
//!   was frozen (SIGSTOP, a long pause, a partition) past its lease and
//!   whose rows another relay claimed meanwhile therefore:
//!   - can **not** mark any of those rows sent, retry or dead-letter them;
//!   - publishes **none** of them after it notices, which is at its next
//!     lease check; it counts them in [`RelayReport::lost`] and the counter
//!     `msp_outbox_lease_lost_total`;
//!   - **can** still complete the publishes that had passed their lease
//!     check when it froze: at most one per key it was publishing (at most
//!     [`concurrency`](RelayConfig::concurrency)). Such a late publish is a
//!     message its key's new holder publishes too (a duplicate the inbox
//!     drops), unless the new holder dead-lettered it and moved on, in
//!     which case it arrives after its key's later messages. A broker
//!     cannot check our token, so no lease-based relay can rule this out;
//!     keep the [lease](RelayConfig::lease) well above the pauses you expect.
//!
//!   Per-key order at a consumer that deduplicates with the inbox
//!   (messages processed in arrival order, duplicates skipped): every
//!   message of a key is processed once, after the key's earlier messages,
//!   except for a dead-lettered message (skipped, or late as above). On
//!   PostgreSQL the claim transaction also sets
//!   `idle_in_transaction_session_timeout` to the lease, so a relay frozen
//!   inside it loses its row locks instead of blocking the keys.
//! - **Lag as metrics**: gauges `msp_outbox_pending_messages` and
//!   `msp_outbox_oldest_pending_seconds`, counters
//!   `msp_outbox_published_total`, `msp_outbox_publish_failures_total` and
//!   `msp_outbox_dead_lettered_total`, all labelled `relay`.
//!
//! Polling is the source of truth. There is no PostgreSQL `LISTEN/NOTIFY`:
//! `NOTIFY` takes a database-wide lock at commit and serialises every
//! committing transaction that sent one. To cut latency inside one process,
//! call [`RelayWaker::wake`] after committing.
//!
//! The tables come from the crate's migrations (`migrations/sqlite`,
//! `migrations/postgres`). Rows marked sent stay for audit until
//! [`Outbox::purge_sent`] removes them.
//!
//! # Example
//!
//! ```
//! use msp_saga::outbox::{BroadcastPublisher, Outbox, OutboxMessage, Relay};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! msp_saga::migrate_sqlite(&pool).await?;
//! # sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY)").execute(&pool).await?;
//!
//! // The business change and its message commit together.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ('o-1')").execute(&mut *tx).await?;
//! let msg = OutboxMessage::json("orders.placed", &serde_json::json!({"order": "o-1"}))?
//!     .with_key("o-1");
//! Outbox::append(&mut tx, &msg).await?;
//! tx.commit().await?;
//!
//! // The relay publishes committed messages.
//! let bus = BroadcastPublisher::new(64);
//! let mut rx = bus.subscribe();
//! let relay = Relay::sqlite(pool.clone(), bus);
//! let report = relay.run_once().await?;
//! assert_eq!(report.published, 1);
//! assert_eq!(rx.recv().await?.id, msg.id);
//! assert_eq!(relay.lag().await?.pending, 0);
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::truncate_micros;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::db::{BackendConn, SqlConnection, from_micros, unix_micros};

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod relay;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "nats")]
pub use nats::JetStreamPublisher;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use relay::{Relay, RelayConfig, RelayReport, RelayWaker};

/// One message in the outbox.
///
/// Build it with [`new`](OutboxMessage::new) or [`json`](OutboxMessage::json)
/// (a fresh UUIDv7 id and the current time) and the `with_*` methods.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::OutboxMessage;
///
/// let msg = OutboxMessage::json("payments.refund", &serde_json::json!({"amount": 42}))?
///     .with_key("order-7")
///     .with_header("trace", "abc");
/// assert_eq!(msg.key.as_deref(), Some("order-7"));
/// let body: serde_json::Value = msg.payload_json()?;
/// assert_eq!(body["amount"], 42);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Unique id (UUIDv7 by default); consumers deduplicate on it.
    pub id: Uuid,
    /// Where the message goes (a NATS subject, an event name).
    pub topic: String,
    /// Ordering key: messages with the same key are published in order.
    pub key: Option<String>,
    /// The body.
    pub payload: Vec<u8>,
    /// Extra headers passed to the publisher.
    pub headers: BTreeMap<String, String>,
    /// When the message was created (stored with microsecond precision).
    pub created_at: SystemTime,
}

impl OutboxMessage {
    /// A message with a new UUIDv7 id, no key and no headers.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        OutboxMessage {
            id: Uuid::now_v7(),
            topic: topic.into(),
            key: None,
            payload: payload.into(),
            headers: BTreeMap::new(),
            created_at: truncate_micros(SystemTime::now()),
        }
    }

    /// A message whose payload is `value` as JSON, with a
    /// `content-type: application/json` header.
    pub fn json<T: Serialize + ?Sized>(
        topic: impl Into<String>,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(OutboxMessage::new(topic, serde_json::to_vec(value)?)
            .with_header("content-type", "application/json"))
    }

    /// Sets the ordering key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Replaces the id (for a message whose id is derived from a business
    /// key, so appending it twice fails on the unique id).
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Decodes the payload as JSON.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// How far the relay is behind: unsent messages that are not dead.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::Lag;
///
/// let lag = Lag::default();
/// assert_eq!(lag.pending, 0);
/// assert!(lag.oldest_age.is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// How many messages wait to be published (dead letters excluded).
    pub pending: u64,
    /// Age of the oldest waiting message, if any.
    pub oldest_age: Option<Duration>,
}

/// A dead-lettered message and why it died.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use msp_saga::outbox::Outbox;
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// msp_saga::migrate_sqlite(&pool).await?;
/// let mut conn = pool.acquire().await?;
/// assert!(Outbox::dead_letters(&mut conn, 10).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message.
    pub message: OutboxMessage,
    /// How many publish attempts failed.
    pub attempts: u32,
    /// The last publish error.
    pub last_error: String,
    /// When it was dead-lettered.
    pub dead_at: SystemTime,
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The database failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("outbox database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Headers could not be encoded or decoded.
    #[error("outbox headers are not valid JSON: {0}")]
    Headers(#[from] serde_json::Error),
}

/// Why a [`Publisher`] failed; [`retryable`](PublishError::retryable) errors
/// are retried with backoff, [`permanent`](PublishError::permanent) ones
/// dead-letter the message at once.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::PublishError;
///
/// let e = PublishError::retryable("broker unavailable");
/// assert!(e.is_retryable());
/// assert!(!PublishError::permanent("message too large").is_retryable());
/// assert_eq!(e.to_string(), "broker unavailable");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    message: String,
    retryable: bool,
}

impl PublishError {
    /// A failure worth retrying (broker down, timeout).
    pub fn retryable(err: impl std::fmt::Display) -> Self {
        PublishError {
            message: err.to_string(),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix (message rejected as invalid).
    pub fn permanent(err: impl std::fmt::Display) -> Self {
        PublishError {
            message: err.to_string(),
            retryable: false,
        }
    }

    /// Whether the relay should retry.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// Where the relay sends messages: an in-process bus, a broker.
///
/// `publish` returns `Ok` only once the message is safely handed over (for
/// a broker: acknowledged); the relay marks the row sent after that.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::{OutboxMessage, PublishError, Publisher};
/// use std::sync::Mutex;
///
/// /// Collects topics, as a test double.
/// #[derive(Debug, Default)]
/// struct Recorder(Mutex<Vec<String>>);
///
/// impl Publisher for Recorder {
///     async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
///         self.0.lock().map_err(PublishError::retryable)?.push(msg.topic.clone());
///         Ok(())
///     }
/// }
/// # let _ = Recorder::default();
/// ```
pub trait Publisher: Send + Sync {
    /// Publishes one message.
    fn publish(&self, msg: &OutboxMessage)
    -> impl Future<Output = Result<(), PublishError>> + Send;
}

impl<P: Publisher> Publisher for Arc<P> {
    fn publish(
        &self,
        msg: &OutboxMessage,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        (**self).publish(msg)
    }
}

/// The default publisher: an in-process bus over `tokio::sync::broadcast`.
///
/// Every subscriber gets every message. Publishing with no subscriber is a
/// retryable error (the relay keeps the message until someone listens). A
/// subscriber that falls more than `capacity` messages behind misses
/// messages (`RecvError::Lagged`), as with any broadcast channel: use a
/// broker publisher when consumers must not miss anything.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::{BroadcastPublisher, OutboxMessage, Publisher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = BroadcastPublisher::new(16);
/// let mut rx = bus.subscribe();
/// bus.publish(&OutboxMessage::new("t", b"hi".to_vec())).await?;
/// assert_eq!(rx.recv().await?.payload, b"hi");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BroadcastPublisher {
    tx: broadcast::Sender<Arc<OutboxMessage>>,
}

impl BroadcastPublisher {
    /// A bus keeping up to `capacity` (at least 1) messages per slow subscriber.
    pub fn new(capacity: usize) -> Self {
        BroadcastPublisher {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// A new subscriber, receiving messages published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OutboxMessage>> {
        self.tx.subscribe()
    }
}

impl Default for BroadcastPublisher {
    /// Capacity 1024.
    fn default() -> Self {
        BroadcastPublisher::new(1024)
    }
}

impl Publisher for BroadcastPublisher {
    async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
        self.tx
            .send(Arc::new(msg.clone()))
            .map(|_| ())
            .map_err(|_| PublishError::retryable("no subscriber on the in-process bus"))
    }
}

/// Operations on the outbox table through your own connection or
/// transaction.
///
/// # Example
///
/// See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct Outbox;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Outbox {
    /// Inserts `msg` through `conn`, normally the transaction that makes the
    /// business change: the message commits or rolls back with it.
    pub async fn append<C: SqlConnection + ?Sized>(
        conn: &mut C,
        msg: &OutboxMessage,
    ) -> Result<(), OutboxError> {
        let headers = serde_json::to_string(&msg.headers)?;
        match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlite::append(c, msg, &headers).await?,
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => postgres::append(c, msg, &headers).await?,
        }
        Ok(())
    }

    /// Unsent, not dead messages and the age of the oldest one.
    pub async fn lag<C: SqlConnection + ?Sized>(conn: &mut C) -> Result<Lag, OutboxError> {
        let (count, oldest) = match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlite::lag(c).await?,
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => postgres::lag(c).await?,
        };
        Ok(Lag {
            pending: u64::try_from(count).unwrap_or(0),
            oldest_age: oldest.map(|us| {
                SystemTime::now()
                    .duration_since(from_micros(us))
                    .unwrap_or_default()
            }),
        })
    }

    /// Up to `limit` dead-lettered messages, oldest first.
    pub async fn dead_letters<C: SqlConnection + ?Sized>(
        conn: &mut C,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let rows = match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlite::dead_letters(c, limit).await?,
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => postgres::dead_letters(c, limit).await?,
        };
        rows.into_iter()
            .map(|(row, last_error, dead_at)| {
                Ok(DeadLetter {
                    attempts: u32::try_from(row.attempts).unwrap_or(0),
                    message: row.into_message()?,
                    last_error: last_error.unwrap_or_default(),
                    dead_at: from_micros(dead_at),
                })
            })
            .collect()
    }

    /// Puts a dead-lettered message back in line with fresh attempts.
    /// Returns whether a dead message with that id existed.
    ///
    /// The message keeps its place in its key's order: it is published
    /// before any later message of the key that is still unsent.
    pub async fn requeue<C: SqlConnection + ?Sized>(
        conn: &mut C,
        id: Uuid,
    ) -> Result<bool, OutboxError> {
        let now = unix_micros(SystemTime::now());
        let n = match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlite::requeue(c, id, now).await?,
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => postgres::requeue(c, id, now).await?,
        };
        Ok(n > 0)
    }

    /// Deletes messages sent before `before`; returns how many.
    pub async fn purge_sent<C: SqlConnection + ?Sized>(
        conn: &mut C,
        before: SystemTime,
    ) -> Result<u64, OutboxError> {
        let before = unix_micros(before);
        Ok(match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => sqlite::purge_sent(c, before).await?,
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => postgres::purge_sent(c, before).await?,
        })
    }
}

/// A row as read back from the outbox table.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) seq: i64,
    pub(crate) id: Uuid,
    pub(crate) topic: String,
    pub(crate) key: Option<String>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: String,
    pub(crate) created_at: i64,
    pub(crate) attempts: i32,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type RowTuple = (i64, Uuid, String, Option<String>, Vec<u8>, String, i64, i32);

/// A [`RowTuple`] plus `last_error` and `dead_at`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type DeadRow = (
    i64,
    Uuid,
    String,
    Option<String>,
    Vec<u8>,
    String,
    i64,
    i32,
    Option<String>,
    i64,
);

/// Who claims rows in one relay round: a fresh fencing token and the
/// relay's name.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub(crate) token: Uuid,
    pub(crate) name: &'a str,
}

/// The columns every dialect selects for a [`RowTuple`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const COLUMNS: &str = "seq, id, topic, msg_key, payload, headers, created_at, attempts";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Row {
    pub(crate) fn from_tuple(t: RowTuple) -> Self {
        Row {
            seq: t.0,
            id: t.1,
            topic: t.2,
            key: t.3,
            payload: t.4,
            headers: t.5,
            created_at: t.6,
            attempts: t.7,
        }
    }

    pub(crate) fn into_message(self) -> Result<OutboxMessage, OutboxError> {
        Ok(OutboxMessage {
            id: self.id,
            topic: self.topic,
            key: self.key,
            payload: self.payload,
            headers: serde_json::from_str(&self.headers)?,
            created_at: from_micros(self.created_at),
        })
    }
}
