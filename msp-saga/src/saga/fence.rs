//! [`LeaseFence`]: the token of the lease under which a step runs, so the
//! step's own writes can be fenced like the orchestrator's.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use super::store::StoreError;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::db::{BackendConn, SqlConnection};

/// The lease a step's call runs under: the saga, the orchestrator that
/// holds it and the saga's version while it does
/// ([`StepContext::fence`](super::StepContext::fence)).
///
/// The orchestrator's own writes are fenced by `(owner, version)`: once
/// another orchestrator claims the saga (its lease ran out, the process
/// was frozen or partitioned), the version moves on and every write of the
/// stale owner fails. A step's effects live elsewhere and are not covered
/// by that. When they go to the **same database as the saga store**, call
/// [`check`](LeaseFence::check) in the effect's transaction: it fails with
/// [`StoreError::Conflict`] if the saga changed hands, and on PostgreSQL it
/// also keeps any other orchestrator from claiming the saga until that
/// transaction ends, so the effect commits only while this call still owns
/// the step and no takeover runs the step alongside it.
///
/// Effects in other systems need their own fencing (pass
/// [`owner`](LeaseFence::owner) and [`version`](LeaseFence::version) as a
/// token they compare), or idempotency keys; otherwise a frozen process can
/// still finish a call after the saga was handed over (at-least-once).
///
/// # Example
///
/// ```
/// use msp_saga::saga::{Saga, StepError};
///
/// let saga = Saga::<()>::builder("fenced")
///     .step("write", |ctx| async move {
///         let fence = ctx.fence();
///         assert_eq!(fence.saga_id(), ctx.saga_id());
///         // let mut tx = pool.begin().await?;
///         // fence.check(&mut tx).await?;  // in the effect's transaction
///         // ... the effect ...; tx.commit().await?;
///         Ok::<_, StepError>(())
///     })
///     .build()?;
/// # let _ = saga;
/// # Ok::<(), msp_saga::saga::InvalidSaga>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    pub(crate) saga_id: Uuid,
    pub(crate) owner: Arc<str>,
    pub(crate) version: i64,
    pub(crate) lease: Duration,
}

impl LeaseFence {
    /// The saga.
    pub fn saga_id(&self) -> Uuid {
        self.saga_id
    }

    /// The orchestrator that holds the saga.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The saga's version under this lease; a takeover increases it.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Fails with [`StoreError::Conflict`] unless the saga is still held by
    /// [`owner`](LeaseFence::owner) at [`version`](LeaseFence::version), as
    /// seen by `conn` (a transaction on the saga store's database).
    ///
    /// On PostgreSQL the saga's row is locked `FOR KEY SHARE` until the
    /// transaction ends: the holder can still renew and write, but no other
    /// orchestrator can claim the saga meanwhile. The transaction also gets
    /// an `idle_in_transaction_session_timeout` of the lease's length, so a
    /// holder frozen inside it loses the transaction (and the lock) instead
    /// of blocking the takeover. On SQLite it is a plain check (one
    /// process per database file; write transactions are serial).
    pub async fn check<C: SqlConnection + ?Sized>(&self, conn: &mut C) -> Result<(), StoreError> {
        let held: Option<i32> = match conn.backend_conn() {
            #[cfg(feature = "sqlite")]
            BackendConn::Sqlite(c) => {
                sqlx::query_scalar(
                    "SELECT 1 FROM msp_sagas WHERE id = ?1 AND owner = ?2 AND version = ?3",
                )
                .bind(self.saga_id.to_string())
                .bind(&*self.owner)
                .bind(self.version)
                .fetch_optional(c)
                .await?
            }
            #[cfg(feature = "postgres")]
            BackendConn::Postgres(c) => {
                let idle_ms = self.lease.as_millis().clamp(1, i32::MAX as u128);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET LOCAL idle_in_transaction_session_timeout = {idle_ms}"
                )))
                .execute(&mut *c)
                .await?;
                sqlx::query_scalar(
                    "SELECT 1 FROM msp_sagas WHERE id = $1 AND owner = $2 AND version = $3 \
                     FOR KEY SHARE",
                )
                .bind(self.saga_id)
                .bind(&*self.owner)
                .bind(self.version)
                .fetch_optional(c)
                .await?
            }
        };
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(self.saga_id)),
        }
    }
}
