//! The SQLite event store (feature `sqlite`).

use super::projection::projection_error;
use super::{
    AppendResult, ConcurrencyError, EventRow, EventStore, EventStoreError, ExpectedVersion,
    NewEvent, Projection, ProjectionProgress, RecordedEvent, Snapshot, event_from_row, to_i64,
    to_u64,
};
use crate::db::unix_micros;
use sqlx::{SqliteConnection, SqlitePool};
use std::time::SystemTime;

const EVENT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, payload, metadata, recorded_at";

/// An event store in a SQLite database (tables from
/// [`migrate_sqlite`](crate::migrate_sqlite)).
///
/// SQLite has one writer at a time: a writing transaction holds the lock
/// from its first insert to its commit, so positions become visible in
/// order and [`read_all`](EventStore::read_all) never has to wait for a gap.
/// Appends begin with `BEGIN IMMEDIATE` so concurrent appenders queue on
/// the lock (up to the pool's busy timeout) instead of failing.
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
/// let store = SqliteEventStore::new(pool.clone());
///
/// // Append in your own transaction, next to other changes.
/// let mut tx = pool.begin().await?;
/// SqliteEventStore::append_in(&mut tx, "order-1", ExpectedVersion::NoStream,
///     vec![NewEvent::new("Placed", serde_json::json!({"total": 10}))]).await?;
/// tx.commit().await?;
/// assert_eq!(store.stream_version("order-1").await?, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    pool: SqlitePool,
}

impl SqliteEventStore {
    /// A store over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteEventStore { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Appends through `conn` (your transaction): the events commit with
    /// it. On a [`ConcurrencyError`] nothing was written.
    pub async fn append_in(
        conn: &mut SqliteConnection,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let current: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) FROM msp_events WHERE stream_id = ?1",
        )
        .bind(stream_id)
        .fetch_one(&mut *conn)
        .await?;
        let current = to_u64(current);
        if !expected.matches(current) {
            return Err(ConcurrencyError {
                stream: stream_id.to_owned(),
                expected,
                actual: current,
            }
            .into());
        }
        let now = unix_micros(SystemTime::now());
        let mut positions = Vec::with_capacity(events.len());
        let mut version = current;
        for e in events {
            version += 1;
            let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
                "INSERT INTO msp_events (stream_id, version, event_id, event_type, payload, metadata, recorded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING position",
            )
            .bind(stream_id)
            .bind(to_i64(version))
            .bind(e.id)
            .bind(&e.event_type)
            .bind(serde_json::to_string(&e.payload)?)
            .bind(serde_json::to_string(&e.metadata)?)
            .bind(now)
            .fetch_one(&mut *conn)
            .await;
            match inserted {
                Ok(p) => positions.push(to_u64(p)),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    // Another connection committed in between (only possible
                    // when the caller's transaction did not lock first).
                    // Remove what this call inserted, so the caller's
                    // transaction stays usable and consistent.
                    if !positions.is_empty() {
                        let ours = serde_json::to_string(&positions)?;
                        sqlx::query("DELETE FROM msp_events WHERE position IN (SELECT value FROM json_each(?1))")
                            .bind(ours)
                            .execute(&mut *conn)
                            .await?;
                    }
                    let actual: i64 = sqlx::query_scalar(
                        "SELECT coalesce(max(version), 0) FROM msp_events WHERE stream_id = ?1",
                    )
                    .bind(stream_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    return Err(ConcurrencyError {
                        stream: stream_id.to_owned(),
                        expected,
                        actual: to_u64(actual),
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(AppendResult { version, positions })
    }

    async fn read_after(
        conn: &mut SqliteConnection,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM msp_events WHERE position > ?1 ORDER BY position LIMIT ?2"
        )))
        .bind(to_i64(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(event_from_row)
            .collect::<Result<_, _>>()?)
    }
}

impl EventStore for SqliteEventStore {
    type Tx = SqliteConnection;

    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let result = SqliteEventStore::append_in(&mut tx, stream_id, expected, events).await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM msp_events WHERE stream_id = ?1 AND version > ?2 ORDER BY version"
        )))
        .bind(stream_id)
        .bind(to_i64(after_version))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(event_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, EventStoreError> {
        let v: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) FROM msp_events WHERE stream_id = ?1",
        )
        .bind(stream_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(to_u64(v))
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let mut conn = self.pool.acquire().await?;
        SqliteEventStore::read_after(&mut conn, after, limit).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        sqlx::query(
            "INSERT INTO msp_snapshots (stream_id, version, state, taken_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, state = excluded.state, \
             taken_at = excluded.taken_at WHERE msp_snapshots.version < excluded.version",
        )
        .bind(&snapshot.stream_id)
        .bind(to_i64(snapshot.version))
        .bind(serde_json::to_string(&snapshot.state)?)
        .bind(unix_micros(SystemTime::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, EventStoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT version, state FROM msp_snapshots WHERE stream_id = ?1")
                .bind(stream_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(version, state)| {
            Ok(Snapshot {
                stream_id: stream_id.to_owned(),
                version: to_u64(version),
                state: serde_json::from_str(&state)?,
            })
        })
        .transpose()
    }

    async fn checkpoint(&self, projection: &str) -> Result<u64, EventStoreError> {
        let p: Option<i64> =
            sqlx::query_scalar("SELECT position FROM msp_projection_checkpoints WHERE name = ?1")
                .bind(projection)
                .fetch_optional(&self.pool)
                .await?;
        Ok(p.map_or(0, to_u64))
    }

    async fn run_projection<P: Projection<SqliteConnection>>(
        &self,
        projection: &mut P,
        limit: usize,
    ) -> Result<ProjectionProgress, EventStoreError> {
        let name = projection.name().to_owned();
        // IMMEDIATE: the write lock first, so the checkpoint read below is
        // the latest and a second runner of this projection waits its turn.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = unix_micros(SystemTime::now());
        sqlx::query(
            "INSERT INTO msp_projection_checkpoints (name, position, updated_at) VALUES (?1, 0, ?2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let start: i64 =
            sqlx::query_scalar("SELECT position FROM msp_projection_checkpoints WHERE name = ?1")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?;
        let events = SqliteEventStore::read_after(&mut tx, to_u64(start), limit).await?;
        let mut checkpoint = to_u64(start);
        for e in &events {
            projection
                .apply(&mut tx, e)
                .await
                .map_err(|err| projection_error(&name, e.position, err))?;
            checkpoint = e.position;
        }
        if !events.is_empty() {
            sqlx::query("UPDATE msp_projection_checkpoints SET position = ?2, updated_at = ?3 WHERE name = ?1")
                .bind(&name)
                .bind(to_i64(checkpoint))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ProjectionProgress {
            processed: events.len(),
            checkpoint,
        })
    }

    async fn reset_projection<P: Projection<SqliteConnection>>(
        &self,
        projection: &mut P,
    ) -> Result<(), EventStoreError> {
        let name = projection.name().to_owned();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        projection
            .reset(&mut tx)
            .await
            .map_err(|err| projection_error(&name, 0, err))?;
        sqlx::query(
            "INSERT INTO msp_projection_checkpoints (name, position, updated_at) VALUES (?1, 0, ?2) \
             ON CONFLICT (name) DO UPDATE SET position = 0, updated_at = excluded.updated_at",
        )
        .bind(&name)
        .bind(unix_micros(SystemTime::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
