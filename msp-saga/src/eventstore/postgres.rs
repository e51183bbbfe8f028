//! The PostgreSQL event store (feature `postgres`).

use super::projection::projection_error;
use super::{
    AppendResult, ConcurrencyError, EventRow, EventStore, EventStoreError, ExpectedVersion,
    NewEvent, Projection, ProjectionProgress, RecordedEvent, Snapshot, event_from_row, to_i64,
    to_u64,
};
use crate::db::unix_micros;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;
use uuid::Uuid;

/// An [`EventRow`] plus the statement snapshot's `xmin` as text.
type SnapshotRow = (i64, String, i64, Uuid, String, String, String, i64, String);

/// How often an `Any` append re-reads the version after losing a race
/// before it reports the conflict.
const ANY_RETRIES: u32 = 8;

/// An event store in PostgreSQL (tables from
/// [`migrate_postgres`](crate::migrate_postgres)); any number of processes
/// may append and project concurrently.
///
/// Versions are checked against the current maximum and enforced by
/// `UNIQUE (stream_id, version)`: of two concurrent appends expecting the
/// same version, one commits and the other gets a [`ConcurrencyError`].
/// [`read_all`](EventStore::read_all) stops before a position whose
/// transaction may still commit (see [the module documentation](super)),
/// so projections never skip an event committed late.
///
/// # Example
///
/// ```no_run
/// use msp_saga::eventstore::{EventStore, ExpectedVersion, NewEvent, PostgresEventStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// msp_saga::migrate_postgres(&pool).await?;
/// let store = PostgresEventStore::new(pool.clone());
/// store.append("order-1", ExpectedVersion::NoStream, vec![NewEvent::new("Placed", 10.into())]).await?;
///
/// // Or inside your own transaction.
/// let mut tx = pool.begin().await?;
/// PostgresEventStore::append_in(&mut tx, "order-1", ExpectedVersion::Exact(1),
///     vec![NewEvent::new("Paid", 10.into())]).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    /// First missing position → a transaction id taken after the snapshot
    /// that first saw it missing. Shared by clones (and so by all
    /// projections of one store value).
    gaps: Arc<Mutex<HashMap<u64, u64>>>,
}

impl PostgresEventStore {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        PostgresEventStore {
            pool,
            gaps: Arc::default(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends through `conn` (your transaction): the events commit with
    /// it. On a [`ConcurrencyError`] the rows this call inserted are removed
    /// again, so the transaction stays usable.
    pub async fn append_in(
        conn: &mut PgConnection,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let n = events.len();
        let mut ids: Vec<Uuid> = Vec::with_capacity(n);
        let mut types: Vec<String> = Vec::with_capacity(n);
        let mut payloads: Vec<String> = Vec::with_capacity(n);
        let mut metas: Vec<String> = Vec::with_capacity(n);
        for e in events {
            ids.push(e.id);
            types.push(e.event_type);
            payloads.push(serde_json::to_string(&e.payload)?);
            metas.push(serde_json::to_string(&e.metadata)?);
        }
        let mut tries = 0;
        loop {
            // Taking the transaction id here, before the positions, is what
            // lets `read_all` prove a missing position will never commit.
            let (_xid, current): (String, i64) = sqlx::query_as(
                "SELECT pg_current_xact_id()::text, coalesce(max(version), 0) FROM msp_events WHERE stream_id = $1",
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
            if n == 0 {
                return Ok(AppendResult {
                    version: current,
                    positions: Vec::new(),
                });
            }
            let mut rows: Vec<(i64, i64)> = sqlx::query_as(
                "INSERT INTO msp_events (stream_id, version, event_id, event_type, payload, metadata, recorded_at, xid) \
                 SELECT $1, $2 + e.ord, e.id, e.ty, e.payload::jsonb, e.meta::jsonb, $3, pg_current_xact_id() \
                 FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS e(id, ty, payload, meta, ord) \
                 ORDER BY e.ord \
                 ON CONFLICT (stream_id, version) DO NOTHING \
                 RETURNING position, version",
            )
            .bind(stream_id)
            .bind(to_i64(current))
            .bind(unix_micros(SystemTime::now()))
            .bind(&ids)
            .bind(&types)
            .bind(&payloads)
            .bind(&metas)
            .fetch_all(&mut *conn)
            .await?;
            if rows.len() == n {
                rows.sort_by_key(|r| r.1);
                return Ok(AppendResult {
                    version: current + n as u64,
                    positions: rows.iter().map(|r| to_u64(r.0)).collect(),
                });
            }
            // Lost the race to a writer that committed these versions.
            if !rows.is_empty() {
                let ours: Vec<i64> = rows.iter().map(|r| r.0).collect();
                sqlx::query("DELETE FROM msp_events WHERE position = ANY($1)")
                    .bind(&ours)
                    .execute(&mut *conn)
                    .await?;
            }
            tries += 1;
            if expected != ExpectedVersion::Any || tries >= ANY_RETRIES {
                let actual: i64 = sqlx::query_scalar(
                    "SELECT coalesce(max(version), 0) FROM msp_events WHERE stream_id = $1",
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
        }
    }

    /// The gap-free committed prefix after `after` (see the module docs).
    async fn read_safe(
        &self,
        conn: &mut PgConnection,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        // One statement, one snapshot: the rows and the snapshot bounds agree.
        let rows: Vec<SnapshotRow> = sqlx::query_as(
            "SELECT position, stream_id, version, event_id, event_type, payload::text, metadata::text, recorded_at, \
                    pg_snapshot_xmin(pg_current_snapshot())::text \
             FROM msp_events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(to_i64(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = after + 1;
        let mut new_gap = None;
        {
            let mut gaps = self.gaps.lock().unwrap_or_else(PoisonError::into_inner);
            gaps.retain(|&missing, _| missing > after);
            for r in rows {
                let position = to_u64(r.0);
                if position != expected {
                    // Positions expected..position are missing in this
                    // snapshot although a later one is visible.
                    let xmin: u64 = r.8.parse().unwrap_or(0);
                    match gaps.get(&expected) {
                        // Every transaction that had an id when the gap was
                        // first seen has ended, before this snapshot: a
                        // position still missing was rolled back.
                        Some(&bound) if xmin >= bound => {
                            gaps.remove(&expected);
                        }
                        Some(_) => break,
                        None => {
                            new_gap = Some(expected);
                            break;
                        }
                    }
                }
                let row: EventRow = (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7);
                out.push(event_from_row(row)?);
                expected = position + 1;
            }
        }
        if let Some(missing) = new_gap {
            // The holder of `missing` took its transaction id before the
            // position, so before the snapshot above; a transaction id taken
            // now is larger than it. (A snapshot's xmax is not such a bound:
            // it is the latest *completed* id + 1.)
            let bound: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
                .fetch_one(&self.pool)
                .await?;
            let bound: u64 = bound.parse().unwrap_or(u64::MAX);
            self.gaps
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(missing)
                .or_insert(bound);
            tracing::debug!(
                missing,
                "event store: waiting for a position to commit or roll back"
            );
        }
        Ok(out)
    }
}

impl EventStore for PostgresEventStore {
    type Tx = PgConnection;

    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let mut tx = self.pool.begin().await?;
        let result = PostgresEventStore::append_in(&mut tx, stream_id, expected, events).await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT position, stream_id, version, event_id, event_type, payload::text, metadata::text, recorded_at \
             FROM msp_events WHERE stream_id = $1 AND version > $2 ORDER BY version",
        )
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
            "SELECT coalesce(max(version), 0) FROM msp_events WHERE stream_id = $1",
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
        self.read_safe(&mut conn, after, limit).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        sqlx::query(
            "INSERT INTO msp_snapshots (stream_id, version, state, taken_at) VALUES ($1, $2, $3::jsonb, $4) \
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
            sqlx::query_as("SELECT version, state::text FROM msp_snapshots WHERE stream_id = $1")
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
            sqlx::query_scalar("SELECT position FROM msp_projection_checkpoints WHERE name = $1")
                .bind(projection)
                .fetch_optional(&self.pool)
                .await?;
        Ok(p.map_or(0, to_u64))
    }

    async fn run_projection<P: Projection<PgConnection>>(
        &self,
        projection: &mut P,
        limit: usize,
    ) -> Result<ProjectionProgress, EventStoreError> {
        let name = projection.name().to_owned();
        let now = unix_micros(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO msp_projection_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The row lock makes concurrent runners of one projection take turns.
        let start: i64 = sqlx::query_scalar(
            "SELECT position FROM msp_projection_checkpoints WHERE name = $1 FOR UPDATE",
        )
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
        let events = self.read_safe(&mut tx, to_u64(start), limit).await?;
        let mut checkpoint = to_u64(start);
        for e in &events {
            projection
                .apply(&mut tx, e)
                .await
                .map_err(|err| projection_error(&name, e.position, err))?;
            checkpoint = e.position;
        }
        if !events.is_empty() {
            sqlx::query("UPDATE msp_projection_checkpoints SET position = $2, updated_at = $3 WHERE name = $1")
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

    async fn reset_projection<P: Projection<PgConnection>>(
        &self,
        projection: &mut P,
    ) -> Result<(), EventStoreError> {
        let name = projection.name().to_owned();
        let mut tx = self.pool.begin().await?;
        projection
            .reset(&mut tx)
            .await
            .map_err(|err| projection_error(&name, 0, err))?;
        sqlx::query(
            "INSERT INTO msp_projection_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
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
