//! What the SQL-backed parts of the crate share: the connection types the
//! outbox and the inbox accept ([`SqlConnection`], re-exported at the crate
//! root) and the encoding of timestamps in their tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "postgres")]
use sqlx::{PgConnection, Postgres};
#[cfg(feature = "sqlite")]
use sqlx::{Sqlite, SqliteConnection};

/// Unix microseconds of `t` (0 before the epoch, saturating).
pub(crate) fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `us` Unix microseconds (the epoch for negative values).
pub(crate) fn from_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// `t` as the tables store it: whole microseconds.
pub(crate) fn truncate_micros(t: SystemTime) -> SystemTime {
    from_micros(unix_micros(t))
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A borrowed SQL connection of one of the supported backends.
///
/// Only used through [`SqlConnection`]; it lets one generic function run the
/// SQL dialect of whichever database the caller's transaction belongs to.
#[doc(hidden)]
#[derive(Debug)]
#[non_exhaustive]
pub enum BackendConn<'a> {
    /// A SQLite connection.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a mut SqliteConnection),
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    Postgres(&'a mut PgConnection),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A SQLite or PostgreSQL connection or transaction that the outbox and the
/// inbox can write through.
///
/// Implemented for `sqlx::Transaction<'_, Sqlite>`, `sqlx::SqliteConnection`,
/// `sqlx::pool::PoolConnection<Sqlite>` (feature `sqlite`) and the same
/// three PostgreSQL types (feature `postgres`), so
/// [`Outbox::append(&mut tx, &msg)`](crate::outbox::Outbox::append) and
/// [`Inbox::try_record(&mut tx, ..)`](crate::inbox::Inbox::try_record) take
/// the transaction you already have. The trait is sealed.
///
/// # Example
///
/// ```
/// use msp_saga::SqlConnection;
///
/// fn takes_any<C: SqlConnection + ?Sized>(_conn: &mut C) {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sqlx::Error> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let mut tx = pool.begin().await?;
/// takes_any(&mut tx); // a transaction
/// takes_any(&mut *tx); // the connection inside it
/// # Ok(()) }
/// ```
pub trait SqlConnection: sealed::Sealed + Send {
    /// The underlying connection, tagged with its backend.
    #[doc(hidden)]
    fn backend_conn(&mut self) -> BackendConn<'_>;
}

#[cfg(feature = "sqlite")]
mod sqlite_impls {
    use super::*;

    impl sealed::Sealed for SqliteConnection {}
    impl SqlConnection for SqliteConnection {
        fn backend_conn(&mut self) -> BackendConn<'_> {
            BackendConn::Sqlite(self)
        }
    }
    impl sealed::Sealed for sqlx::Transaction<'_, Sqlite> {}
    impl SqlConnection for sqlx::Transaction<'_, Sqlite> {
        fn backend_conn(&mut self) -> BackendConn<'_> {
            BackendConn::Sqlite(self)
        }
    }
    impl sealed::Sealed for sqlx::pool::PoolConnection<Sqlite> {}
    impl SqlConnection for sqlx::pool::PoolConnection<Sqlite> {
        fn backend_conn(&mut self) -> BackendConn<'_> {
            BackendConn::Sqlite(self)
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres_impls {
    use super::*;

    impl sealed::Sealed for PgConnection {}
    impl SqlConnection for PgConnection {
        fn backend_conn(&mut self) -> BackendConn<'_> {
            BackendConn::Postgres(self)
        }
    }
    impl sealed::Sealed for sqlx::Transaction<'_, Postgres> {}
    impl SqlConnection for sqlx::Transaction<'_, Postgres> {
        fn backend_conn(&mut self) -> BackendConn<'_> {
            BackendConn::Postgres(self)
        }
    }
    impl sealed::Sealed for sqlx::pool::PoolConnection<Postgres> {}
    impl SqlConnection for sqlx::pool::PoolConnection<Postgres> {
        fn backend_conn(&mut self) -> BackendConn<'_> {
            BackendConn::Postgres(self)
        }
    }
}
