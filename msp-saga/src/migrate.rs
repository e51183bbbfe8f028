//! Schema migrations for the SQL stores (sagas, outbox, inbox, events).
//!
//! One migrator per backend applies every table of this crate, in version
//! order: sagas use versions 1–99, the outbox, inbox and event store 100 and
//! up. Migrations are embedded in the binary; running them again is a no-op.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! msp_saga::migrate_sqlite(&pool).await?;
//! msp_saga::migrate_sqlite(&pool).await?; // idempotent
//! # Ok(()) }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```

/// Applies msp-saga's PostgreSQL migrations (`migrations/postgres`) to the
/// database (in the schema first on the connection's `search_path`).
#[cfg(feature = "postgres")]
pub async fn migrate_postgres(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations/postgres").run(pool).await
}

/// Applies msp-saga's SQLite migrations (`migrations/sqlite`).
#[cfg(feature = "sqlite")]
pub async fn migrate_sqlite(pool: &sqlx::SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations/sqlite").run(pool).await
}
