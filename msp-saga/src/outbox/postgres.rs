//! The outbox's PostgreSQL dialect.

use super::{COLUMNS, Claim, DeadRow, OutboxMessage, Row, RowTuple};
use crate::db::unix_micros;
use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) async fn append(
    c: &mut PgConnection,
    msg: &OutboxMessage,
    headers: &str,
) -> Result<(), sqlx::Error> {
    let created = unix_micros(msg.created_at);
    sqlx::query(
        "INSERT INTO msp_outbox (id, topic, msg_key, payload, headers, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(msg.id)
    .bind(&msg.topic)
    .bind(msg.key.as_deref())
    .bind(&msg.payload[..])
    .bind(headers)
    .bind(created)
    .execute(c)
    .await?;
    Ok(())
}

pub(crate) async fn lag(c: &mut PgConnection) -> Result<(i64, Option<i64>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), min(created_at) FROM msp_outbox WHERE sent_at IS NULL AND dead_at IS NULL",
    )
    .fetch_one(c)
    .await
}

pub(crate) async fn dead_letters(
    c: &mut PgConnection,
    limit: u32,
) -> Result<Vec<(Row, Option<String>, i64)>, sqlx::Error> {
    let rows: Vec<DeadRow> =
        sqlx::query_as(
            "SELECT seq, id, topic, msg_key, payload, headers, created_at, attempts, last_error, dead_at \
             FROM msp_outbox WHERE dead_at IS NOT NULL ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                Row::from_tuple((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7)),
                r.8,
                r.9,
            )
        })
        .collect())
}

pub(crate) async fn requeue(c: &mut PgConnection, id: Uuid, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE msp_outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $2, \
         claimed_until = NULL, claim_token = NULL, last_error = NULL \
         WHERE id = $1 AND dead_at IS NOT NULL",
    )
    .bind(id)
    .bind(now)
    .execute(c)
    .await?
    .rows_affected())
}

pub(crate) async fn purge_sent(c: &mut PgConnection, before: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM msp_outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
            .bind(before)
            .execute(c)
            .await?
            .rows_affected(),
    )
}

/// Claims the heads of their keys (and unkeyed rows) that are due, skipping
/// rows another relay is claiming right now, then up to `per_key` followers
/// of each claimed keyed head, in one transaction.
///
/// A keyed row is a head only while no earlier row of its key is unsent and
/// alive, whoever holds it; so while one relay holds a key's head, no other
/// relay can take any of that key's messages, and the holder leases the
/// followers it takes with the head.
///
/// Every claimed row gets `claim.token` (and the relay's name); the later
/// writes of this round apply only while the row still carries it.
pub(crate) async fn claim(
    pool: &sqlx::PgPool,
    now: i64,
    lease_until: i64,
    batch: i64,
    claim: &Claim<'_>,
) -> Result<Vec<Row>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // A relay frozen inside this transaction (stopped, swapped out) would
    // keep its row locks, and SKIP LOCKED would keep every other relay off
    // those keys for as long as it stays frozen: let the server end the
    // transaction once it idles for as long as the lease.
    let idle_ms = ((lease_until - now) / 1000).max(1);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL idle_in_transaction_session_timeout = {idle_ms}"
    )))
    .execute(&mut *tx)
    .await?;
    let heads: Vec<RowTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE msp_outbox SET claimed_until = $2, claim_token = $4, claimed_by = $5 WHERE seq IN ( \
           SELECT o.seq FROM msp_outbox o \
           WHERE o.sent_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= $1 \
             AND (o.claimed_until IS NULL OR o.claimed_until <= $1) \
             AND (o.msg_key IS NULL OR NOT EXISTS ( \
               SELECT 1 FROM msp_outbox p WHERE p.msg_key = o.msg_key AND p.seq < o.seq \
                 AND p.sent_at IS NULL AND p.dead_at IS NULL)) \
           ORDER BY o.seq LIMIT $3 \
           FOR UPDATE SKIP LOCKED) \
         RETURNING {COLUMNS}"
    )))
    .bind(now)
    .bind(lease_until)
    .bind(batch)
    .bind(claim.token)
    .bind(claim.name)
    .fetch_all(&mut *tx)
    .await?;
    let mut rows: Vec<Row> = heads.into_iter().map(Row::from_tuple).collect();
    let keys: Vec<String> = rows.iter().filter_map(|r| r.key.clone()).collect();
    let room = batch - rows.len() as i64;
    if !keys.is_empty() && room > 0 {
        let per_key = (room / keys.len() as i64).max(1);
        let head_seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let followers: Vec<RowTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE msp_outbox SET claimed_until = $1, claim_token = $5, claimed_by = $6 WHERE seq IN ( \
               SELECT seq FROM ( \
                 SELECT seq, row_number() OVER (PARTITION BY msg_key ORDER BY seq) AS rn \
                 FROM msp_outbox \
                 WHERE msg_key = ANY($2) AND sent_at IS NULL AND dead_at IS NULL \
                   AND seq <> ALL($3)) f \
               WHERE rn <= $4) \
             RETURNING {COLUMNS}"
        )))
        .bind(lease_until)
        .bind(&keys)
        .bind(&head_seqs)
        .bind(per_key)
        .bind(claim.token)
        .bind(claim.name)
        .fetch_all(&mut *tx)
        .await?;
        rows.extend(followers.into_iter().map(Row::from_tuple));
    }
    tx.commit().await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Extends the lease of the rows of `seqs` this round (`token`) still holds
/// unsent and alive; returns how many.
pub(crate) async fn renew(
    pool: &sqlx::PgPool,
    seqs: &[i64],
    lease_until: i64,
    token: Uuid,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE msp_outbox SET claimed_until = $2 \
         WHERE seq = ANY($1) AND claim_token = $3 AND sent_at IS NULL AND dead_at IS NULL",
    )
    .bind(seqs)
    .bind(lease_until)
    .bind(token)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Marks the rows of `seqs` that this round still holds sent; returns how
/// many it marked.
pub(crate) async fn mark_sent(
    pool: &sqlx::PgPool,
    seqs: &[i64],
    now: i64,
    claim: &Claim<'_>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE msp_outbox SET sent_at = $1, claimed_until = NULL, claimed_by = $4 \
         WHERE seq = ANY($2) AND claim_token = $3 AND sent_at IS NULL",
    )
    .bind(now)
    .bind(seqs)
    .bind(claim.token)
    .bind(claim.name)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(crate) async fn release(
    pool: &sqlx::PgPool,
    seqs: &[i64],
    token: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE msp_outbox SET claimed_until = NULL WHERE seq = ANY($1) AND claim_token = $2",
    )
    .bind(seqs)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed publish of row `seq` if this round still holds it;
/// returns whether it did.
pub(crate) async fn record_failure(
    pool: &sqlx::PgPool,
    seq: i64,
    attempts: i32,
    next_attempt_at: i64,
    error: &str,
    dead_at: Option<i64>,
    token: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE msp_outbox SET attempts = $2, next_attempt_at = $3, claimed_until = NULL, \
         last_error = $4, dead_at = $5 \
         WHERE seq = $1 AND claim_token = $6 AND sent_at IS NULL AND dead_at IS NULL",
    )
    .bind(seq)
    .bind(attempts)
    .bind(next_attempt_at)
    .bind(error)
    .bind(dead_at)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
