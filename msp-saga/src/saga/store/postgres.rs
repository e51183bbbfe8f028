use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::{NewSaga, SagaStore, StoreError, Transition, decode_event, encode_event};
use crate::saga::log::{LogEntry, LogEvent, SagaRecord, SagaState};

/// A [`SagaStore`] in PostgreSQL (feature `postgres`), shared safely by
/// several orchestrator processes.
///
/// Every write is a single SQL statement (data-modifying CTEs), so a step
/// transition costs one round trip and one commit. Claims use
/// `FOR UPDATE SKIP LOCKED`, so concurrent orchestrators split the due
/// sagas between them instead of queueing on each other's row locks.
///
/// Run [`migrate_postgres`](crate::migrate_postgres) first.
///
/// # Example
///
/// ```no_run
/// use msp_saga::saga::store::PostgresSagaStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// msp_saga::migrate_postgres(&pool).await?;
/// let store = PostgresSagaStore::new(pool);
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresSagaStore {
    pool: PgPool,
}

impl PostgresSagaStore {
    /// A store using `pool` (migrated with
    /// [`migrate_postgres`](crate::migrate_postgres)).
    pub fn new(pool: PgPool) -> Self {
        PostgresSagaStore { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn logs(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<LogEntry>>, StoreError> {
        let rows = sqlx::query(
            "SELECT saga_id, seq, at, body::text FROM msp_saga_log \
             WHERE saga_id = ANY($1) ORDER BY saga_id, seq",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<Uuid, Vec<LogEntry>> = HashMap::new();
        for row in rows {
            let id: Uuid = row.try_get(0)?;
            let body: String = row.try_get(3)?;
            out.entry(id).or_default().push(LogEntry {
                seq: row.try_get(1)?,
                at: row.try_get(2)?,
                event: decode_event(&body)?,
            });
        }
        Ok(out)
    }

    async fn with_logs(&self, rows: Vec<PgRow>) -> Result<Vec<SagaRecord>, StoreError> {
        let mut records = rows
            .iter()
            .map(decode_saga)
            .collect::<Result<Vec<_>, _>>()?;
        if records.is_empty() {
            return Ok(records);
        }
        let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
        let mut logs = self.logs(&ids).await?;
        for r in &mut records {
            r.log = logs.remove(&r.id).unwrap_or_default();
        }
        Ok(records)
    }
}

const SAGA_COLUMNS: &str =
    "id, name, state, data::text, version, owner, lease_until, due_at, created_at, updated_at";

fn decode_saga(row: &PgRow) -> Result<SagaRecord, StoreError> {
    let state: String = row.try_get(2)?;
    let data: String = row.try_get(3)?;
    Ok(SagaRecord {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        state: state
            .parse::<SagaState>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("saga data: {e}")))?,
        version: row.try_get(4)?,
        owner: row.try_get(5)?,
        lease_until: row.try_get(6)?,
        due_at: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
        log: Vec::new(),
    })
}

/// Kinds, steps and JSON bodies: the parallel arrays `unnest` turns into
/// log rows.
type EventArrays = (Vec<String>, Vec<String>, Vec<String>);

fn event_arrays(events: &[LogEvent]) -> Result<EventArrays, StoreError> {
    let mut kinds = Vec::with_capacity(events.len());
    let mut steps = Vec::with_capacity(events.len());
    let mut bodies = Vec::with_capacity(events.len());
    for e in events {
        kinds.push(e.kind().to_owned());
        steps.push(e.step().unwrap_or_default().to_owned());
        bodies.push(encode_event(e)?);
    }
    Ok((kinds, steps, bodies))
}

impl SagaStore for PostgresSagaStore {
    async fn create(&self, saga: NewSaga) -> Result<(), StoreError> {
        let (kinds, steps, bodies) = event_arrays(&saga.events)?;
        let data = serde_json::to_string(&saga.data)
            .map_err(|e| StoreError::Corrupt(format!("saga data: {e}")))?;
        let created: i64 = sqlx::query_scalar(
            "WITH s AS ( \
               INSERT INTO msp_sagas (id, name, state, data, version, owner, lease_until, due_at, created_at, updated_at) \
               VALUES ($1, $2, $3, $4::jsonb, 1, $5, $6, $7, $8, $8) \
               ON CONFLICT (id) DO NOTHING RETURNING id), \
             l AS ( \
               INSERT INTO msp_saga_log (saga_id, seq, at, kind, step, body, writer, version) \
               SELECT s.id, e.ord, $8, e.kind, NULLIF(e.step, ''), e.body::jsonb, $5, 1 \
               FROM s, unnest($9::text[], $10::text[], $11::text[]) WITH ORDINALITY AS e(kind, step, body, ord)) \
             SELECT count(*) FROM s",
        )
        .bind(saga.id)
        .bind(&saga.name)
        .bind(saga.state.as_str())
        .bind(data)
        .bind(saga.owner.as_deref())
        .bind(saga.lease_until)
        .bind(saga.due_at)
        .bind(saga.now)
        .bind(kinds)
        .bind(steps)
        .bind(bodies)
        .fetch_one(&self.pool)
        .await?;
        if created == 0 {
            return Err(StoreError::Duplicate(saga.id));
        }
        Ok(())
    }

    async fn append(&self, t: Transition) -> Result<i64, StoreError> {
        let (kinds, steps, bodies) = event_arrays(&t.events)?;
        let version: Option<i64> = sqlx::query_scalar(
            "WITH u AS ( \
               UPDATE msp_sagas SET state = $4, owner = $5, lease_until = $6, due_at = $7, \
                 updated_at = $8, version = version + 1 \
               WHERE id = $1 AND version = $2 AND owner IS NOT DISTINCT FROM $3 \
               RETURNING id, version), \
             l AS ( \
               INSERT INTO msp_saga_log (saga_id, seq, at, kind, step, body, writer, version) \
               SELECT u.id, $9 + e.ord - 1, $8, e.kind, NULLIF(e.step, ''), e.body::jsonb, $13, u.version \
               FROM u, unnest($10::text[], $11::text[], $12::text[]) WITH ORDINALITY AS e(kind, step, body, ord)) \
             SELECT version FROM u",
        )
        .bind(t.id)
        .bind(t.expected_version)
        .bind(t.expected_owner.as_deref())
        .bind(t.state.as_str())
        .bind(t.owner.as_deref())
        .bind(t.lease_until)
        .bind(t.due_at)
        .bind(t.now)
        .bind(t.first_seq)
        .bind(kinds)
        .bind(steps)
        .bind(bodies)
        .bind(t.writer())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(t.id),
            _ => StoreError::from(e),
        })?;
        match version {
            Some(v) => Ok(v),
            None => {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM msp_sagas WHERE id = $1")
                        .bind(t.id)
                        .fetch_optional(&self.pool)
                        .await?;
                Err(match exists {
                    Some(_) => StoreError::Conflict(t.id),
                    None => StoreError::NotFound(t.id),
                })
            }
        }
    }

    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        version: i64,
        lease_until: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE msp_sagas SET lease_until = $4 WHERE id = $1 AND owner = $2 AND version = $3",
        )
        .bind(id)
        .bind(owner)
        .bind(version)
        .bind(lease_until)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(id))
        }
    }

    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let sql = format!(
            "WITH c AS ( \
               SELECT id FROM msp_sagas \
               WHERE state IN ('running', 'compensating') AND lease_until < $2 AND due_at <= $2 \
               ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE msp_sagas s SET owner = $1, lease_until = $3, version = s.version + 1, updated_at = $2 \
             FROM c WHERE s.id = c.id \
             RETURNING {}",
            SAGA_COLUMNS
                .split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        self.with_logs(rows).await
    }

    async fn load(&self, id: Uuid) -> Result<Option<SagaRecord>, StoreError> {
        let sql = format!("SELECT {SAGA_COLUMNS} FROM msp_sagas WHERE id = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(self.with_logs(rows).await?.pop())
    }

    async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let sql = format!(
            "SELECT {SAGA_COLUMNS} FROM msp_sagas WHERE ($1::text IS NULL OR state = $1) \
             ORDER BY created_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.map(SagaState::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        self.with_logs(rows).await
    }
}
