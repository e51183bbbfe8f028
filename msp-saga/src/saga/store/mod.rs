//! Where sagas are persisted: the [`SagaStore`] trait and its in-memory,
//! SQLite and PostgreSQL implementations.
//!
//! Every method is one atomic commit. Writes are guarded by an optimistic
//! check of the saga's `version` and current `owner`, so an orchestrator
//! that lost its lease can never overwrite the work of the one that took
//! the saga over.
//!
//! # Example
//!
//! ```
//! use msp_saga::saga::store::{MemorySagaStore, NewSaga, SagaStore, Transition};
//! use msp_saga::saga::{LogEvent, SagaState};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemorySagaStore::new();
//! let id = uuid::Uuid::now_v7();
//! store.create(NewSaga {
//!     id,
//!     name: "demo".into(),
//!     data: serde_json::json!({}),
//!     state: SagaState::Running,
//!     owner: Some("me".into()),
//!     lease_until: i64::MAX,
//!     due_at: 0,
//!     now: 1,
//!     events: vec![LogEvent::StepStarted { step: "a".into(), attempt: 1 }],
//! }).await?;
//! let v = store.append(Transition {
//!     id,
//!     expected_version: 1,
//!     expected_owner: Some("me".into()),
//!     state: SagaState::Completed,
//!     owner: None,
//!     lease_until: 0,
//!     due_at: 0,
//!     now: 2,
//!     first_seq: 2,
//!     events: vec![LogEvent::Completed],
//! }).await?;
//! assert_eq!(v, 2);
//! let record = store.load(id).await?.expect("stored");
//! assert_eq!(record.state, SagaState::Completed);
//! assert_eq!(record.log.len(), 2);
//! # Ok(()) }
//! ```

use std::future::Future;

use serde_json::Value;
use uuid::Uuid;

use super::log::{LogEvent, SagaRecord, SagaState};

mod memory;
pub use memory::MemorySagaStore;

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSagaStore;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PostgresSagaStore;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The saga's version or owner is not what the write expected: another
    /// orchestrator (or an operator) changed it first.
    #[error("saga {0} was changed concurrently (version or owner mismatch)")]
    Conflict(Uuid),
    /// A saga with this id already exists.
    #[error("saga {0} already exists")]
    Duplicate(Uuid),
    /// No saga has this id.
    #[error("saga {0} not found")]
    NotFound(Uuid),
    /// A stored row could not be decoded.
    #[error("corrupt saga record: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("saga store backend: {0}")]
    Backend(#[source] msp_core::BoxError),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// A saga to insert (one commit: the row and its first log events).
#[derive(Debug, Clone)]
pub struct NewSaga {
    /// The instance id.
    pub id: Uuid,
    /// The definition's name.
    pub name: String,
    /// The saga's data.
    pub data: Value,
    /// The initial state (normally [`SagaState::Running`]).
    pub state: SagaState,
    /// The orchestrator that will run it now, or `None` to leave it to
    /// whichever orchestrator claims it first.
    pub owner: Option<String>,
    /// End of `owner`'s lease (ms since the Unix epoch; 0 when unowned).
    pub lease_until: i64,
    /// When the saga is due (ms since the Unix epoch).
    pub due_at: i64,
    /// The current time (ms since the Unix epoch), for `created_at`.
    pub now: i64,
    /// The first log events, numbered from 1.
    pub events: Vec<LogEvent>,
}

/// A guarded write: new state, lease and due time, and log events appended
/// from `first_seq`, all in one commit, applied only if the saga is still
/// at `expected_version` and held by `expected_owner`.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The saga.
    pub id: Uuid,
    /// The version the writer last saw; the write bumps it by one.
    pub expected_version: i64,
    /// The owner the writer expects (`None` = unowned).
    pub expected_owner: Option<String>,
    /// The new state.
    pub state: SagaState,
    /// The new owner.
    pub owner: Option<String>,
    /// The new lease end (ms since the Unix epoch).
    pub lease_until: i64,
    /// The new due time (ms since the Unix epoch).
    pub due_at: i64,
    /// The current time (ms since the Unix epoch).
    pub now: i64,
    /// The sequence number of the first of `events`.
    pub first_seq: i64,
    /// The events to append.
    pub events: Vec<LogEvent>,
}

impl Transition {
    /// Who writes it: the new owner, else the expected one (an orchestrator
    /// finishing a saga it held). Stored with the log rows (`writer`).
    pub fn writer(&self) -> Option<&str> {
        self.owner.as_deref().or(self.expected_owner.as_deref())
    }
}

/// Persistence for sagas. Each method is one atomic commit.
///
/// Implementations must pass the conformance suite in
/// `msp-saga/tests/saga_store.rs`. The orchestrator relies on:
///
/// - [`append`](SagaStore::append) and [`renew`](SagaStore::renew) apply
///   only when `version` and `owner` match, else
///   [`StoreError::Conflict`];
/// - [`claim`](SagaStore::claim) hands each eligible saga to one caller
///   only, bumping its version.
pub trait SagaStore: Send + Sync + 'static {
    /// Inserts a saga with version 1 and its first log events.
    fn create(&self, saga: NewSaga) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies a guarded [`Transition`]; returns the new version.
    fn append(&self, t: Transition) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Extends the lease of a saga the caller holds, without changing its
    /// version. [`StoreError::Conflict`] if `owner` or `version` differ.
    fn renew(
        &self,
        id: Uuid,
        owner: &str,
        version: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Claims up to `limit` sagas that are active (running or compensating),
    /// whose lease ended before `now` and whose `due_at <= now`: sets their
    /// owner and lease, bumps their version, and returns them with their
    /// logs. Concurrent callers never receive the same saga.
    fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send;

    /// Loads one saga with its log.
    fn load(&self, id: Uuid)
    -> impl Future<Output = Result<Option<SagaRecord>, StoreError>> + Send;

    /// Lists sagas (in the given state, or all), oldest first, with their
    /// logs; at most `limit`.
    fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send;
}

impl<S: SagaStore> SagaStore for std::sync::Arc<S> {
    fn create(&self, saga: NewSaga) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).create(saga)
    }
    fn append(&self, t: Transition) -> impl Future<Output = Result<i64, StoreError>> + Send {
        (**self).append(t)
    }
    fn renew(
        &self,
        id: Uuid,
        owner: &str,
        version: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).renew(id, owner, version, lease_until)
    }
    fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send {
        (**self).claim(owner, now, lease_until, limit)
    }
    fn load(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<SagaRecord>, StoreError>> + Send {
        (**self).load(id)
    }
    fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send {
        (**self).list(state, limit)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_event(body: &str) -> Result<LogEvent, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("log event: {e}")))
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn encode_event(event: &LogEvent) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|e| StoreError::Corrupt(format!("log event: {e}")))
}
