//! The connection types the outbox, the inbox and the SQL event stores accept.

#[cfg(feature = "postgres")]
use sqlx::{PgConnection, Postgres};
#[cfg(feature = "sqlite")]
use sqlx::{Sqlite, SqliteConnection};

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

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

/// A SQLite or PostgreSQL connection or transaction that the outbox and the
/// inbox can write through.
///
/// Implemented for `sqlx::Transaction<'_, Sqlite>`, `sqlx::SqliteConnection`,
/// `sqlx::pool::PoolConnection<Sqlite>` (feature `sqlite`) and the same
/// three PostgreSQL types (feature `postgres`), so
/// [`Outbox::append(&mut tx, &msg)`](crate::outbox::Outbox::append) takes the
/// transaction you already have. The trait is sealed.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::SqlConnection;
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
