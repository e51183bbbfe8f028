//! Distributed data management embedded in your own database: durable
//! sagas, a transactional outbox, an idempotent inbox, and an event store
//! with CQRS projections.
//!
//! msp-saga is a library, not a server: sagas, outbox rows and events live
//! in tables next to your data (SQLite by default, PostgreSQL with the
//! `postgres` feature), created by `migrate_sqlite` / `migrate_postgres`.
//!
//! | module | what it gives you |
//! |---|---|
//! | [`saga`] | an orchestrator that runs steps with compensations, persists every transition before its effect, retries with backoff, and resumes after a crash (several replicas share one PostgreSQL) |
//! | [`outbox`] | messages appended in the caller's transaction and relayed to a broker after commit |
//! | [`inbox`] | `(consumer, message_id)` deduplication inside the handler's transaction |
//! | [`eventstore`] | append with expected version, aggregates, snapshots, projections |
//!
//! # Example
//!
//! A saga on the embedded SQLite store: the second step fails, so the first
//! is compensated.
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use msp_saga::saga::{Orchestrator, Saga, SagaState, SqliteSagaStore, StepError};
//!
//! let saga = Saga::<String>::builder("greet")
//!     .step("reserve", |ctx| async move { Ok::<_, StepError>(format!("seat for {}", ctx.data())) })
//!     .compensate(|_ctx| async move { Ok(()) })
//!     .step("confirm", |_ctx| async move { Err::<(), _>(StepError::permanent("sold out")) })
//!     .build()?;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteSagaStore::open(dir.path().join("sagas.db")).await?;
//! let orchestrator = Orchestrator::builder(store).register(&saga).build()?;
//! let _recovery = orchestrator.spawn_recovery(); // resumes sagas after a restart
//!
//! let handle = orchestrator.start(&saga, "ada".to_owned()).await?;
//! assert_eq!(handle.wait().await?, SagaState::Compensated);
//! # Ok(()) }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! # Features
//!
//! - `sqlite` (default): SQLite stores through sqlx (bundled SQLite).
//! - `postgres`: PostgreSQL stores through sqlx, for several processes.
//! - `nats`: publish outbox messages to NATS JetStream.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod eventstore;
pub mod inbox;
pub mod outbox;
pub mod saga;

mod db;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[doc(hidden)]
pub use db::BackendConn;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use db::SqlConnection;

mod migrate;
#[cfg(feature = "postgres")]
pub use migrate::migrate_postgres;
#[cfg(feature = "sqlite")]
pub use migrate::migrate_sqlite;
