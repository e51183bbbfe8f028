//! Helpers shared by msp-saga's test binaries: counting and failing saga
//! stores, a migrated database per test (a unique PostgreSQL schema, a
//! SQLite file in a temp dir, or an in-memory SQLite).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use msp_saga::saga::store::{NewSaga, SagaStore, StoreError, Transition};
use msp_saga::saga::{SagaRecord, SagaState};
use uuid::Uuid;

pub mod journal;
pub mod process;

/// Counts the commits (create, append, renew, claim) that reach the store.
#[derive(Debug, Clone)]
pub struct CountingStore<S> {
    pub inner: S,
    pub commits: Arc<AtomicUsize>,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            commits: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }
}

impl<S: SagaStore> SagaStore for CountingStore<S> {
    async fn create(&self, saga: NewSaga) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.create(saga).await
    }
    async fn append(&self, t: Transition) -> Result<i64, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.append(t).await
    }
    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        version: i64,
        lease_until: i64,
    ) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.renew(id, owner, version, lease_until).await
    }
    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let claimed = self.inner.claim(owner, now, lease_until, limit).await?;
        if !claimed.is_empty() {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        Ok(claimed)
    }
    async fn load(&self, id: Uuid) -> Result<Option<SagaRecord>, StoreError> {
        self.inner.load(id).await
    }
    async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        self.inner.list(state, limit).await
    }
}

/// A pool on a fresh schema (migrated) of the Postgres at `url`.
#[cfg(feature = "postgres")]
pub async fn pg_pool(url: &str, max_connections: u32) -> (sqlx::PgPool, String) {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;

    let schema = format!("msp_saga_t_{}", Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(url)
        .await
        .expect("connect to postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let options = PgConnectOptions::from_str(url)
        .expect("postgres url")
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .expect("connect to postgres schema");
    msp_saga::migrate_postgres(&pool).await.expect("migrate");
    (pool, schema)
}

/// A pool (at most 4 connections, WAL) on a fresh migrated SQLite file
/// `name` in a new temp dir; the dir lives as long as the returned guard.
#[cfg(feature = "sqlite")]
pub async fn sqlite_file_pool(
    name: &str,
) -> Result<(sqlx::SqlitePool, tempfile::TempDir), msp_core::BoxError> {
    let dir = tempfile::tempdir()?;
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join(name))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?;
    msp_saga::migrate_sqlite(&pool).await?;
    Ok((pool, dir))
}

/// A one-connection pool on a fresh migrated in-memory SQLite database.
#[cfg(feature = "sqlite")]
pub async fn sqlite_memory_pool() -> Result<sqlx::SqlitePool, msp_core::BoxError> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await?;
    msp_saga::migrate_sqlite(&pool).await?;
    Ok(pool)
}

/// Drops a schema made by [`pg_pool`].
#[cfg(feature = "postgres")]
pub async fn drop_schema(url: &str, schema: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

/// Delegates to `inner` but fails every lease renewal with a backend error
/// (the database is unreachable while a step runs).
#[derive(Debug, Clone)]
pub struct RenewFails<S> {
    pub inner: S,
    pub renewals: Arc<AtomicUsize>,
}

impl<S> RenewFails<S> {
    pub fn new(inner: S) -> Self {
        RenewFails {
            inner,
            renewals: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl<S: SagaStore> SagaStore for RenewFails<S> {
    async fn create(&self, saga: NewSaga) -> Result<(), StoreError> {
        self.inner.create(saga).await
    }
    async fn append(&self, t: Transition) -> Result<i64, StoreError> {
        self.inner.append(t).await
    }
    async fn renew(&self, _: Uuid, _: &str, _: i64, _: i64) -> Result<(), StoreError> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Backend("database unreachable".into()))
    }
    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        self.inner.claim(owner, now, lease_until, limit).await
    }
    async fn load(&self, id: Uuid) -> Result<Option<SagaRecord>, StoreError> {
        self.inner.load(id).await
    }
    async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        self.inner.list(state, limit).await
    }
}
