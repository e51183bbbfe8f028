use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{NewSaga, SagaStore, StoreError, Transition, decode_event, encode_event};
use crate::saga::log::{LogEntry, LogEvent, SagaRecord, SagaState};

/// A [`SagaStore`] in SQLite (feature `sqlite`, the embedded default).
///
/// SQLite has one writer at a time, so the store writes through a pool of
/// **one** connection (writes queue in the pool instead of failing with
/// `SQLITE_BUSY`) and reads through a separate pool.
/// [`open`](SqliteSagaStore::open) sets WAL mode, `synchronous = FULL` (a
/// commit survives power loss) and a busy timeout, and runs the
/// migrations.
///
/// One orchestrator process per database file: SQLite has no row locks, so
/// several processes would serialise on the file (still safe, thanks to
/// the version checks, but slow). Use PostgreSQL for several replicas.
///
/// # Example
///
/// ```
/// use msp_saga::saga::store::{SagaStore, SqliteSagaStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = SqliteSagaStore::open(dir.path().join("sagas.db")).await?;
/// assert!(store.list(None, 10).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteSagaStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteSagaStore {
    /// Opens (creating if needed) the database file at `path`, migrates it
    /// and returns a store with a one-connection write pool and a
    /// four-connection read pool.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        crate::migrate_sqlite(&writer)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteSagaStore { writer, reader })
    }

    /// A store on a pool you configured (migrated with
    /// [`migrate_sqlite`](crate::migrate_sqlite)); it is used for reads and
    /// writes. Give it `max_connections(1)` or a busy timeout.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteSagaStore {
            writer: pool.clone(),
            reader: pool,
        }
    }

    /// The write pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

const SAGA_COLUMNS: &str =
    "id, name, state, data, version, owner, lease_until, due_at, created_at, updated_at";

fn decode_saga(row: &SqliteRow) -> Result<SagaRecord, StoreError> {
    let id: String = row.try_get(0)?;
    let state: String = row.try_get(2)?;
    let data: String = row.try_get(3)?;
    Ok(SagaRecord {
        id: id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("saga id `{id}`: {e}")))?,
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

async fn load_log<'c, E>(exec: E, id: Uuid) -> Result<Vec<LogEntry>, StoreError>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    let rows = sqlx::query("SELECT seq, at, body FROM msp_saga_log WHERE saga_id = ? ORDER BY seq")
        .bind(id.to_string())
        .fetch_all(exec)
        .await?;
    rows.iter()
        .map(|row| {
            let body: String = row.try_get(2)?;
            Ok(LogEntry {
                seq: row.try_get(0)?,
                at: row.try_get(1)?,
                event: decode_event(&body)?,
            })
        })
        .collect()
}

async fn insert_events(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    first_seq: i64,
    at: i64,
    (writer, version): (Option<&str>, i64),
    events: &[LogEvent],
) -> Result<(), StoreError> {
    let id = id.to_string();
    for (i, e) in events.iter().enumerate() {
        sqlx::query(
            "INSERT INTO msp_saga_log (saga_id, seq, at, kind, step, body, writer, version) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(first_seq + i as i64)
        .bind(at)
        .bind(e.kind())
        .bind(e.step())
        .bind(encode_event(e)?)
        .bind(writer)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl SagaStore for SqliteSagaStore {
    async fn create(&self, saga: NewSaga) -> Result<(), StoreError> {
        let data = serde_json::to_string(&saga.data)
            .map_err(|e| StoreError::Corrupt(format!("saga data: {e}")))?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "INSERT INTO msp_sagas (id, name, state, data, version, owner, lease_until, due_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(saga.id.to_string())
        .bind(&saga.name)
        .bind(saga.state.as_str())
        .bind(data)
        .bind(saga.owner.as_deref())
        .bind(saga.lease_until)
        .bind(saga.due_at)
        .bind(saga.now)
        .bind(saga.now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Duplicate(saga.id));
        }
        insert_events(
            &mut tx,
            saga.id,
            1,
            saga.now,
            (saga.owner.as_deref(), 1),
            &saga.events,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append(&self, t: Transition) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE msp_sagas SET state = ?, owner = ?, lease_until = ?, due_at = ?, updated_at = ?, \
               version = version + 1 \
             WHERE id = ? AND version = ? AND owner IS ? RETURNING version",
        )
        .bind(t.state.as_str())
        .bind(t.owner.as_deref())
        .bind(t.lease_until)
        .bind(t.due_at)
        .bind(t.now)
        .bind(t.id.to_string())
        .bind(t.expected_version)
        .bind(t.expected_owner.as_deref())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT version FROM msp_sagas WHERE id = ?")
                    .bind(t.id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict(t.id),
                None => StoreError::NotFound(t.id),
            });
        };
        insert_events(
            &mut tx,
            t.id,
            t.first_seq,
            t.now,
            (t.writer(), version),
            &t.events,
        )
        .await
        .map_err(|e| match e {
            StoreError::Backend(ref b)
                if b.downcast_ref::<sqlx::Error>().is_some_and(
                    |s| matches!(s, sqlx::Error::Database(db) if db.is_unique_violation()),
                ) =>
            {
                StoreError::Conflict(t.id)
            }
            other => other,
        })?;
        tx.commit().await?;
        Ok(version)
    }

    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        version: i64,
        lease_until: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE msp_sagas SET lease_until = ? WHERE id = ? AND owner = ? AND version = ?",
        )
        .bind(lease_until)
        .bind(id.to_string())
        .bind(owner)
        .bind(version)
        .execute(&self.writer)
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
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE msp_sagas SET owner = ?, lease_until = ?, version = version + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM msp_sagas \
               WHERE state IN ('running', 'compensating') AND lease_until < ? AND due_at <= ? \
               ORDER BY due_at LIMIT ?) \
             RETURNING {SAGA_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let mut records = rows
            .iter()
            .map(decode_saga)
            .collect::<Result<Vec<_>, _>>()?;
        for r in &mut records {
            r.log = load_log(&mut *tx, r.id).await?;
        }
        tx.commit().await?;
        records.sort_by_key(|r| (r.due_at, r.id));
        Ok(records)
    }

    async fn load(&self, id: Uuid) -> Result<Option<SagaRecord>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let sql = format!("SELECT {SAGA_COLUMNS} FROM msp_sagas WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut rec = decode_saga(&row)?;
        rec.log = load_log(&mut *conn, id).await?;
        Ok(Some(rec))
    }

    async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let sql = format!(
            "SELECT {SAGA_COLUMNS} FROM msp_sagas WHERE (?1 IS NULL OR state = ?1) \
             ORDER BY created_at, id LIMIT ?2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.map(SagaState::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await?;
        let mut records = rows
            .iter()
            .map(decode_saga)
            .collect::<Result<Vec<_>, _>>()?;
        for r in &mut records {
            r.log = load_log(&mut *conn, r.id).await?;
        }
        Ok(records)
    }
}
