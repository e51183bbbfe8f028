//! Durable sagas, transactional outbox, idempotent inbox, event sourcing.
//!
//! (Crate documentation is written as the modules land.)

pub mod eventstore;
pub mod inbox;
pub mod outbox;
pub mod saga;

mod migrate;
#[cfg(feature = "postgres")]
pub use migrate::migrate_postgres;
#[cfg(feature = "sqlite")]
pub use migrate::migrate_sqlite;
