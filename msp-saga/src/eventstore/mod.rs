//! Event sourcing and CQRS: an append-only event store with optimistic
//! concurrency, aggregates folded from their events, snapshots, and
//! projections that build read models from the global order.
//!
//! - **Streams** ([`EventStore::append`]): each stream (one aggregate) is a
//!   numbered sequence of events, versions 1, 2, 3, … An append states what
//!   it expects ([`ExpectedVersion::Any`], [`NoStream`](ExpectedVersion::NoStream),
//!   [`Exact(n)`](ExpectedVersion::Exact)); a writer that lost a race gets a
//!   typed [`ConcurrencyError`]. The SQL stores enforce it with a
//!   `UNIQUE (stream_id, version)` constraint, so it holds across processes.
//! - **Global order**: every event also gets a `position` that increases
//!   across all streams; [`EventStore::read_all`] returns events in that
//!   order.
//! - **Aggregates** ([`Aggregate`], [`load_aggregate`], [`save_aggregate`]):
//!   state folded from typed (serde) events, with a snapshot every *N*
//!   events ([`SnapshotPolicy`]); loading reads the snapshot and the events
//!   after it.
//! - **Projections** ([`Projection`], [`EventStore::run_projection`]): a
//!   read model updated from the global order with a durable checkpoint,
//!   written in the same transaction as the read model when that lives in
//!   the same database. [`EventStore::reset_projection`] replays from the
//!   start.
//!
//! # Never skipping an event committed late
//!
//! Positions come from a sequence, handed out when a transaction inserts,
//! not when it commits. A transaction holding position 10 may commit after
//! another one wrote position 11; a projection that already checkpointed 11
//! would never see 10 (the Marten bug). [`EventStore::read_all`] therefore
//! returns only a **gap-free prefix**: it stops before a missing position
//! until that position is proven either committed (it shows up) or never
//! to commit:
//!
//! - PostgreSQL: an appending transaction takes its transaction id before
//!   its positions. When position *m* is missing but a later one is
//!   visible, the transaction holding *m* already had its id; the store
//!   then takes a fresh transaction id *B*, which is larger. Once a read's
//!   snapshot has `pg_snapshot_xmin(pg_current_snapshot()) >= B`, every
//!   transaction with an id below *B* has ended, so a still-missing *m* was
//!   rolled back and is skipped. No timeouts are involved; a writing
//!   transaction left open holds projections back (never the writers)
//!   until it ends.
//! - SQLite: one writer at a time holds the database lock from its first
//!   insert to its commit, so positions become visible in order and a gap
//!   can never be filled later.
//! - In memory: positions are assigned and published under one lock.
//!
//! # Example
//!
//! ```
//! use msp_saga::eventstore::{
//!     load_aggregate, save_aggregate, Aggregate, EventStore, ExpectedVersion,
//!     MemoryEventStore, NewEvent, SnapshotPolicy,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Account { balance: i64 }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! enum AccountEvent { Deposited(i64), Withdrawn(i64) }
//!
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     fn apply(&mut self, event: AccountEvent) {
//!         match event {
//!             AccountEvent::Deposited(n) => self.balance += n,
//!             AccountEvent::Withdrawn(n) => self.balance -= n,
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), msp_saga::eventstore::EventStoreError> {
//! let store = MemoryEventStore::new();
//! let mut account = load_aggregate::<Account, _>(&store, "account-1").await?;
//! save_aggregate(&store, "account-1", &mut account,
//!     vec![AccountEvent::Deposited(100), AccountEvent::Withdrawn(30)],
//!     SnapshotPolicy::Every(10)).await?;
//! assert_eq!((account.state.balance, account.version), (70, 2));
//!
//! // A writer that read version 1 loses against the one above.
//! let stale = store.append("account-1", ExpectedVersion::Exact(1),
//!     vec![NewEvent::from_serde(&AccountEvent::Deposited(1))?]).await;
//! assert!(stale.unwrap_err().is_concurrency());
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::time::SystemTime;
use uuid::Uuid;

mod aggregate;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod projection;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use aggregate::{
    Aggregate, Loaded, SnapshotPolicy, fold_aggregate, load_aggregate, save_aggregate,
};
pub use memory::MemoryEventStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresEventStore;
pub use projection::{Projection, ProjectionProgress, run_projection};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteEventStore;

/// What an append expects the stream's current version to be.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::ExpectedVersion;
///
/// assert!(ExpectedVersion::NoStream.matches(0));
/// assert!(ExpectedVersion::Exact(3).matches(3));
/// assert!(!ExpectedVersion::Exact(3).matches(4));
/// assert!(ExpectedVersion::Any.matches(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must have no events yet (version 0).
    NoStream,
    /// The stream must be exactly at this version (0 = no events).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` satisfies this expectation.
    pub fn matches(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(n) => current == n,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(n) => write!(f, "version {n}"),
        }
    }
}

/// An append lost an optimistic-concurrency race: the stream was not at the
/// expected version.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::{ConcurrencyError, ExpectedVersion};
///
/// let e = ConcurrencyError { stream: "order-1".into(), expected: ExpectedVersion::Exact(2), actual: 3 };
/// assert_eq!(e.to_string(), "stream order-1 expected version 2 but is at version 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} expected {expected} but is at version {actual}")]
pub struct ConcurrencyError {
    /// The stream.
    pub stream: String,
    /// What the append expected.
    pub expected: ExpectedVersion,
    /// The stream's version when the append was rejected.
    pub actual: u64,
}

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// Optimistic concurrency: another writer appended first.
    #[error(transparent)]
    Concurrency(#[from] ConcurrencyError),
    /// The database failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("event store database error: {0}")]
    Db(#[from] sqlx::Error),
    /// An event or a snapshot could not be encoded or decoded.
    #[error("event store serialization error: {0}")]
    Json(#[from] serde_json::Error),
    /// A projection's handler failed at `position`; its transaction (read
    /// model changes and checkpoint) was rolled back.
    #[error("projection {name} failed at position {position}: {source}")]
    Projection {
        /// The projection.
        name: String,
        /// The event it failed on.
        position: u64,
        /// The handler's error.
        #[source]
        source: msp_core::BoxError,
    },
}

impl EventStoreError {
    /// Whether this is a [`ConcurrencyError`] (reload and retry).
    pub fn is_concurrency(&self) -> bool {
        matches!(self, EventStoreError::Concurrency(_))
    }
}

/// An event to append.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::NewEvent;
///
/// #[derive(serde::Serialize)]
/// enum OrderEvent { Placed { total: u32 } }
///
/// let e = NewEvent::from_serde(&OrderEvent::Placed { total: 5 })?;
/// assert_eq!(e.event_type, "Placed");
/// let e = NewEvent::new("Shipped", serde_json::json!({"carrier": "ups"}));
/// assert_eq!(e.payload["carrier"], "ups");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id (UUIDv7 by default).
    pub id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The event's data.
    pub payload: serde_json::Value,
    /// Extra data (correlation ids, user); an empty object by default.
    pub metadata: serde_json::Value,
}

impl NewEvent {
    /// An event of `event_type` with `payload` and empty metadata.
    pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> Self {
        NewEvent {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            payload,
            metadata: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// `event` as JSON; the type name is the enum variant (serde's
    /// externally tagged form, or a `"type"` field), else `"event"`.
    pub fn from_serde<E: Serialize + ?Sized>(event: &E) -> Result<Self, serde_json::Error> {
        let payload = serde_json::to_value(event)?;
        let event_type = match &payload {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) => match m.get("type") {
                Some(serde_json::Value::String(t)) => t.clone(),
                _ if m.len() == 1 => m.keys().next().cloned().unwrap_or_default(),
                _ => "event".to_owned(),
            },
            _ => "event".to_owned(),
        };
        Ok(NewEvent::new(event_type, payload))
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A stored event.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), msp_saga::eventstore::EventStoreError> {
/// use msp_saga::eventstore::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent};
///
/// let store = MemoryEventStore::new();
/// store.append("s", ExpectedVersion::NoStream, vec![NewEvent::new("A", 1.into())]).await?;
/// let events = store.read_stream("s", 0).await?;
/// assert_eq!((events[0].version, events[0].position), (1, 1));
/// let n: i32 = events[0].decode()?;
/// assert_eq!(n, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in the global order (starts at 1, increases, may skip
    /// numbers).
    pub position: u64,
    /// The stream.
    pub stream_id: String,
    /// Version within the stream (1, 2, 3, …).
    pub version: u64,
    /// The event's id.
    pub id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The event's data.
    pub payload: serde_json::Value,
    /// Extra data.
    pub metadata: serde_json::Value,
    /// When it was appended (microsecond precision).
    pub recorded_at: SystemTime,
}

impl RecordedEvent {
    /// Decodes the payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.payload)
    }
}

/// Where an append put its events.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), msp_saga::eventstore::EventStoreError> {
/// use msp_saga::eventstore::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent};
///
/// let store = MemoryEventStore::new();
/// let r = store.append("s", ExpectedVersion::Any,
///     vec![NewEvent::new("A", 1.into()), NewEvent::new("B", 2.into())]).await?;
/// assert_eq!(r.version, 2);
/// assert_eq!(r.positions, vec![1, 2]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append.
    pub version: u64,
    /// The global positions of the appended events, in order.
    pub positions: Vec<u64>,
}

/// A stream's folded state at a version.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::Snapshot;
///
/// let s = Snapshot { stream_id: "s".into(), version: 10, state: serde_json::json!({"n": 10}) };
/// assert_eq!(s.version, 10);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: String,
    /// The last event folded into `state`.
    pub version: u64,
    /// The state as JSON.
    pub state: serde_json::Value,
}

/// An event store: in memory ([`MemoryEventStore`]), SQLite
/// (`SqliteEventStore`, feature `sqlite`) or PostgreSQL (`PostgresEventStore`,
/// feature `postgres`).
///
/// All three pass one conformance suite (`tests/eventstore.rs`).
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::{EventStore, ExpectedVersion, NewEvent, SqliteEventStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// msp_saga::migrate_sqlite(&pool).await?;
/// let store = SqliteEventStore::new(pool);
///
/// async fn count<S: EventStore>(store: &S) -> Result<usize, msp_saga::eventstore::EventStoreError> {
///     Ok(store.read_all(0, 100).await?.len())
/// }
/// store.append("a", ExpectedVersion::NoStream, vec![NewEvent::new("A", 1.into())]).await?;
/// store.append("b", ExpectedVersion::NoStream, vec![NewEvent::new("B", 2.into())]).await?;
/// assert_eq!(count(&store).await?, 2);
/// # Ok(()) }
/// ```
pub trait EventStore: Send + Sync {
    /// What a [`Projection`] writes its read model through, in the same
    /// transaction as its checkpoint: `sqlx::SqliteConnection`,
    /// `sqlx::PgConnection`, or `()` in memory.
    type Tx: Send + ?Sized;

    /// Appends `events` to `stream_id` if its version matches `expected`,
    /// atomically. No events: only the check.
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult, EventStoreError>> + Send;

    /// The stream's events with a version above `after_version`, in order
    /// (`0` for all).
    fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, EventStoreError>> + Send;

    /// The stream's current version (0 when it has no events).
    fn stream_version(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + Send;

    /// Up to `limit` committed events after global position `after`, in
    /// position order, stopping before a position that may still commit
    /// (see [the module documentation](self)). Process them in order and
    /// continue after the last one.
    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, EventStoreError>> + Send;

    /// Stores a snapshot, unless a newer one is stored already.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), EventStoreError>> + Send;

    /// The stream's latest snapshot.
    fn load_snapshot(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<Option<Snapshot>, EventStoreError>> + Send;

    /// The projection's checkpoint: the last position it processed (0 at
    /// first).
    fn checkpoint(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + Send;

    /// Runs `projection` over up to `limit` events after its checkpoint and
    /// stores the new checkpoint. SQL stores do both in one transaction,
    /// which [`Projection::apply`] writes through, and lock the checkpoint
    /// row so two runners of one projection take turns. On a handler error
    /// nothing of the batch is kept (in memory: the events before the
    /// failing one are).
    fn run_projection<P: Projection<Self::Tx>>(
        &self,
        projection: &mut P,
        limit: usize,
    ) -> impl Future<Output = Result<ProjectionProgress, EventStoreError>> + Send;

    /// Replay: calls [`Projection::reset`] and sets the checkpoint back to
    /// 0 (in one transaction on SQL stores); the next runs rebuild the read
    /// model from the first event.
    fn reset_projection<P: Projection<Self::Tx>>(
        &self,
        projection: &mut P,
    ) -> impl Future<Output = Result<(), EventStoreError>> + Send;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Row shape shared by the SQL stores: position, stream, version, id, type,
/// payload, metadata, recorded_at.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type EventRow = (i64, String, i64, Uuid, String, String, String, i64);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn event_from_row(r: EventRow) -> Result<RecordedEvent, serde_json::Error> {
    Ok(RecordedEvent {
        position: to_u64(r.0),
        stream_id: r.1,
        version: to_u64(r.2),
        id: r.3,
        event_type: r.4,
        payload: serde_json::from_str(&r.5)?,
        metadata: serde_json::from_str(&r.6)?,
        recorded_at: crate::db::from_micros(r.7),
    })
}
