//! Transactional outbox and relay: against SQLite (temp file) and the real
//! PostgreSQL (a unique schema per test).
#![cfg(feature = "sqlite")]

mod common;

use msp_core::backoff::Backoff;
use msp_saga::inbox::Inbox;
use msp_saga::outbox::{Outbox, OutboxMessage, PublishError, Publisher, Relay, RelayConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

enum Db {
    Sqlite(sqlx::SqlitePool, #[allow(dead_code)] tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Pg(sqlx::PgPool),
}

async fn sqlite_db() -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
    let (pool, dir) = common::sqlite_file_pool("outbox.db").await?;
    sqlx::query("CREATE TABLE effects (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    Ok(Db::Sqlite(pool, dir))
}

#[cfg(feature = "postgres")]
async fn pg_db(url: &str) -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
    let (pool, _schema) = common::pg_pool(url, 8).await;
    sqlx::query("CREATE TABLE effects (name TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(&pool)
        .await?;
    Ok(Db::Pg(pool))
}

impl Db {
    async fn append(&self, msgs: &[OutboxMessage], commit: bool) -> TestResult {
        match self {
            Db::Sqlite(pool, _) => {
                let mut tx = pool.begin().await?;
                for m in msgs {
                    Outbox::append(&mut tx, m).await?;
                }
                if commit {
                    tx.commit().await?
                } else {
                    tx.rollback().await?
                }
            }
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => {
                let mut tx = pool.begin().await?;
                for m in msgs {
                    Outbox::append(&mut tx, m).await?;
                }
                if commit {
                    tx.commit().await?
                } else {
                    tx.rollback().await?
                }
            }
        }
        Ok(())
    }

    fn relay<P: Publisher>(&self, publisher: P) -> Relay<P> {
        self.relay_named("outbox", publisher)
    }

    fn relay_named<P: Publisher>(&self, name: &str, publisher: P) -> Relay<P> {
        let config = RelayConfig::default()
            .name(name)
            .backoff(Backoff::constant(Duration::from_secs(1)).unwrap_or_default())
            .max_attempts(3);
        match self {
            Db::Sqlite(pool, _) => Relay::sqlite(pool.clone(), publisher).with_config(config),
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => Relay::postgres(pool.clone(), publisher).with_config(config),
        }
    }

    async fn count_ids(&self, id: Uuid) -> Result<i64, sqlx::Error> {
        match self {
            Db::Sqlite(pool, _) => {
                sqlx::query_scalar("SELECT count(*) FROM msp_outbox WHERE id = ?1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
            }
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM msp_outbox WHERE id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
            }
        }
    }

    /// The consumer: records the message in the inbox and bumps a counter
    /// named after it, in one transaction.
    async fn consume(
        &self,
        msg: &OutboxMessage,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let name = msg.id.to_string();
        let outcome = match self {
            Db::Sqlite(pool, _) => {
                Inbox::handle(pool, "test-consumer", msg.id, |tx| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO effects VALUES (?1, 1) ON CONFLICT (name) DO UPDATE SET n = n + 1")
                            .bind(name)
                            .execute(&mut **tx)
                            .await
                    })
                })
                .await?
                .is_duplicate()
            }
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => {
                Inbox::handle(pool, "test-consumer", msg.id, |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO effects VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET n = effects.n + 1",
                        )
                        .bind(name)
                        .execute(&mut **tx)
                        .await
                    })
                })
                .await?
                .is_duplicate()
            }
        };
        Ok(!outcome)
    }

    async fn effect_count(&self, id: Uuid) -> Result<i64, sqlx::Error> {
        let name = id.to_string();
        let n: Option<i64> = match self {
            Db::Sqlite(pool, _) => {
                sqlx::query_scalar("SELECT n FROM effects WHERE name = ?1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => {
                sqlx::query_scalar("SELECT n FROM effects WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(n.unwrap_or(0))
    }

    async fn dead_letters(
        &self,
    ) -> Result<Vec<msp_saga::outbox::DeadLetter>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match self {
            Db::Sqlite(pool, _) => Outbox::dead_letters(&mut pool.acquire().await?, 100).await?,
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => Outbox::dead_letters(&mut pool.acquire().await?, 100).await?,
        })
    }

    async fn requeue(&self, id: Uuid) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match self {
            Db::Sqlite(pool, _) => Outbox::requeue(&mut pool.acquire().await?, id).await?,
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => Outbox::requeue(&mut pool.acquire().await?, id).await?,
        })
    }
}

/// Records what was published; fails chosen messages a chosen number of
/// times (`u32::MAX`: always), retryably or permanently.
#[derive(Debug, Default)]
struct Recorder {
    log: Mutex<Vec<OutboxMessage>>,
    fail: Mutex<HashMap<Uuid, (u32, bool)>>,
}

impl Recorder {
    fn fail(&self, id: Uuid, times: u32, permanent: bool) {
        if let Ok(mut f) = self.fail.lock() {
            f.insert(id, (times, permanent));
        }
    }
    fn published(&self) -> Vec<OutboxMessage> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn published_ids(&self) -> Vec<Uuid> {
        self.published().iter().map(|m| m.id).collect()
    }
}

impl Publisher for Recorder {
    async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
        {
            let mut fail = self.fail.lock().map_err(PublishError::retryable)?;
            if let Some((left, permanent)) = fail.get_mut(&msg.id)
                && *left > 0
            {
                *left = left.saturating_sub(1);
                return Err(if *permanent {
                    PublishError::permanent("injected permanent failure")
                } else {
                    PublishError::retryable("injected failure")
                });
            }
        }
        self.log
            .lock()
            .map_err(PublishError::retryable)?
            .push(msg.clone());
        Ok(())
    }
}

fn msg(key: Option<&str>, body: &str) -> OutboxMessage {
    let m = OutboxMessage::new("test.topic", body.as_bytes().to_vec());
    match key {
        Some(k) => m.with_key(k),
        None => m,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------

async fn rolled_back_rows_are_never_published(db: Db) -> TestResult {
    let lost = msg(Some("k"), "rolled back");
    let kept = msg(Some("k"), "committed");
    db.append(std::slice::from_ref(&lost), false).await?;
    db.append(std::slice::from_ref(&kept), true).await?;
    assert_eq!(
        db.count_ids(lost.id).await?,
        0,
        "a rolled-back append leaves no row"
    );

    let rec = Arc::new(Recorder::default());
    let relay = db.relay(rec.clone());
    let t = SystemTime::now();
    for i in 0..3 {
        relay.run_once_at(t + HOUR * i).await?;
    }
    assert_eq!(rec.published_ids(), vec![kept.id]);
    assert_eq!(rec.published()[0].payload, b"committed");
    assert_eq!(relay.lag().await?.pending, 0);
    Ok(())
}

#[tokio::test]
async fn rolled_back_rows_are_never_published_sqlite() -> TestResult {
    rolled_back_rows_are_never_published(sqlite_db().await?).await
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn rolled_back_rows_are_never_published_postgres() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    rolled_back_rows_are_never_published(pg_db(&url).await?).await
}

// ---------------------------------------------------------------------------

/// Hands the message to the consumer, then (while `hang`) never returns:
/// the relay is killed between publishing and marking the row sent.
#[derive(Debug)]
struct CrashAfterPublish {
    out: tokio::sync::mpsc::UnboundedSender<OutboxMessage>,
    hang: AtomicBool,
}

impl Publisher for CrashAfterPublish {
    async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
        self.out
            .send(msg.clone())
            .map_err(PublishError::retryable)?;
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

async fn relay_crash_redelivers_and_inbox_dedups(db: Db) -> TestResult {
    let m = msg(Some("order-1"), "charge");
    db.append(std::slice::from_ref(&m), true).await?;

    let (out, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let crashing = db.relay(CrashAfterPublish {
        out: out.clone(),
        hang: AtomicBool::new(true),
    });
    let t = SystemTime::now();
    // The relay publishes, then dies (its future is dropped) before marking.
    let first = tokio::select! {
        r = crashing.run_once_at(t) => panic!("the relay should hang after publishing: {r:?}"),
        got = delivered.recv() => got.ok_or("channel closed")?,
    };
    drop(crashing);
    assert_eq!(first.id, m.id);
    assert!(db.consume(&first).await?, "first delivery has an effect");

    // A new relay: the row is still leased to the dead one, then taken over.
    let relay = db.relay(CrashAfterPublish {
        out,
        hang: AtomicBool::new(false),
    });
    assert_eq!(
        relay.run_once_at(t).await?.claimed,
        0,
        "the lease is respected"
    );
    let report = relay.run_once_at(t + HOUR).await?;
    assert_eq!(report.published, 1, "redelivered after the lease expired");
    let second = delivered.recv().await.ok_or("channel closed")?;
    assert_eq!(second.id, m.id);
    assert!(
        !db.consume(&second).await?,
        "the inbox skips the redelivery"
    );
    assert_eq!(db.effect_count(m.id).await?, 1, "the effect happened once");

    assert_eq!(
        relay.run_once_at(t + HOUR * 2).await?.claimed,
        0,
        "marked sent at last"
    );
    assert_eq!(relay.lag().await?.pending, 0);
    Ok(())
}

#[tokio::test]
async fn relay_crash_redelivers_and_inbox_dedups_sqlite() -> TestResult {
    relay_crash_redelivers_and_inbox_dedups(sqlite_db().await?).await
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn relay_crash_redelivers_and_inbox_dedups_postgres() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    relay_crash_redelivers_and_inbox_dedups(pg_db(&url).await?).await
}

// ---------------------------------------------------------------------------

async fn per_key_order_with_failing_head(db: Db) -> TestResult {
    let a1 = msg(Some("A"), "a1");
    let b1 = msg(Some("B"), "b1");
    let a2 = msg(Some("A"), "a2");
    let u1 = msg(None, "u1");
    let b2 = msg(Some("B"), "b2");
    let a3 = msg(Some("A"), "a3");
    db.append(&[a1.clone(), b1.clone(), a2.clone()], true)
        .await?;
    db.append(&[u1.clone(), b2.clone(), a3.clone()], true)
        .await?;

    let rec = Arc::new(Recorder::default());
    rec.fail(a1.id, 2, false);
    let relay = db.relay(rec.clone());
    let t = SystemTime::now();

    let r1 = relay.run_once_at(t).await?;
    assert_eq!((r1.published, r1.failed), (3, 1), "{r1:?}");
    let first: std::collections::HashSet<Uuid> = rec.published_ids().into_iter().collect();
    assert_eq!(
        first,
        [b1.id, u1.id, b2.id].into(),
        "A is blocked behind its failing head, B is not"
    );
    let b: Vec<Uuid> = rec
        .published()
        .iter()
        .filter(|m| m.key.as_deref() == Some("B"))
        .map(|m| m.id)
        .collect();
    assert_eq!(b, vec![b1.id, b2.id], "key B in append order");
    assert_eq!(
        relay.run_once_at(t).await?.claimed,
        0,
        "the failed head waits for its backoff"
    );

    let r2 = relay.run_once_at(t + HOUR).await?;
    assert_eq!((r2.claimed, r2.failed, r2.published), (3, 1, 0), "{r2:?}");
    let r3 = relay.run_once_at(t + HOUR * 2).await?;
    assert_eq!(r3.published, 3, "{r3:?}");

    let ids = rec.published_ids();
    let a: Vec<Uuid> = rec
        .published()
        .iter()
        .filter(|m| m.key.as_deref() == Some("A"))
        .map(|m| m.id)
        .collect();
    assert_eq!(a, vec![a1.id, a2.id, a3.id], "key A in append order");
    assert_eq!(ids.len(), 6, "each message once");
    assert_eq!(relay.lag().await?.pending, 0);
    Ok(())
}

#[tokio::test]
async fn per_key_order_with_failing_head_sqlite() -> TestResult {
    per_key_order_with_failing_head(sqlite_db().await?).await
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn per_key_order_with_failing_head_postgres() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    per_key_order_with_failing_head(pg_db(&url).await?).await
}

// ---------------------------------------------------------------------------

async fn dead_letter_after_cap(db: Db) -> TestResult {
    let x1 = msg(Some("K"), "poison");
    let x2 = msg(Some("K"), "next");
    let p = msg(Some("P"), "rejected");
    db.append(&[x1.clone(), x2.clone(), p.clone()], true)
        .await?;

    let rec = Arc::new(Recorder::default());
    rec.fail(x1.id, u32::MAX, false);
    rec.fail(p.id, 1, true);
    let relay = db.relay(rec.clone()); // max_attempts(3)
    let t = SystemTime::now();

    let r1 = relay.run_once_at(t).await?;
    assert_eq!(
        (r1.failed, r1.dead_lettered),
        (1, 1),
        "a permanent error dead-letters at once: {r1:?}"
    );
    relay.run_once_at(t + HOUR).await?;
    assert!(rec.published_ids().is_empty(), "x2 waits behind x1");
    let r3 = relay.run_once_at(t + HOUR * 2).await?;
    assert_eq!(r3.dead_lettered, 1, "third failure hits the cap: {r3:?}");

    let dead = db.dead_letters().await?;
    assert_eq!(dead.len(), 2);
    assert_eq!((dead[0].message.id, dead[0].attempts), (x1.id, 3));
    assert!(
        dead[0].last_error.contains("injected failure"),
        "{}",
        dead[0].last_error
    );
    assert_eq!((dead[1].message.id, dead[1].attempts), (p.id, 1));
    assert_eq!(dead[1].message.payload, b"rejected");

    // The key moves on past its dead letter.
    relay.run_once_at(t + HOUR * 3).await?;
    assert_eq!(rec.published_ids(), vec![x2.id]);
    assert_eq!(relay.lag().await?.pending, 0, "dead letters are not lag");

    // An operator requeues the poison message once it can succeed.
    rec.fail(x1.id, 0, false);
    assert!(db.requeue(x1.id).await?);
    assert!(!db.requeue(x1.id).await?, "no longer dead");
    relay.run_once_at(t + HOUR * 4).await?;
    assert_eq!(rec.published_ids(), vec![x2.id, x1.id]);
    assert_eq!(db.dead_letters().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn dead_letter_after_cap_sqlite() -> TestResult {
    dead_letter_after_cap(sqlite_db().await?).await
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn dead_letter_after_cap_postgres() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    dead_letter_after_cap(pg_db(&url).await?).await
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn lag_counts_pending_messages() -> TestResult {
    let db = sqlite_db().await?;
    db.append(&[msg(None, "1"), msg(None, "2")], true).await?;
    let rec = Arc::new(Recorder::default());
    let relay = db.relay(rec.clone());
    let lag = relay.lag().await?;
    assert_eq!(lag.pending, 2);
    assert!(lag.oldest_age.is_some());
    relay.run_once().await?;
    let lag = relay.lag().await?;
    assert_eq!((lag.pending, lag.oldest_age), (0, None));
    Ok(())
}

/// Two relays on one PostgreSQL outbox: every message published exactly
/// once, each key in order.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_relays_share_work_in_key_order() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    let db = pg_db(&url).await?;
    let mut expected: HashMap<String, Vec<Uuid>> = HashMap::new();
    for batch in 0..10 {
        let msgs: Vec<OutboxMessage> = (0..20)
            .map(|i| msg(Some(&format!("key-{}", (batch + i) % 7)), "x"))
            .collect();
        for m in &msgs {
            expected
                .entry(m.key.clone().unwrap_or_default())
                .or_default()
                .push(m.id);
        }
        db.append(&msgs, true).await?;
    }
    let rec = Arc::new(Recorder::default());
    let small = |r: Relay<Arc<Recorder>>| r.with_config(RelayConfig::default().batch_size(7));
    let r1 = Arc::new(small(db.relay(rec.clone())));
    let r2 = Arc::new(small(db.relay(rec.clone())));
    for _ in 0..200 {
        let (a, b) = tokio::join!(r1.run_once(), r2.run_once());
        if a?.claimed + b?.claimed == 0 && r1.lag().await?.pending == 0 {
            break;
        }
    }
    let published = rec.published();
    assert_eq!(published.len(), 200, "each message exactly once");
    let mut by_key: HashMap<String, Vec<Uuid>> = HashMap::new();
    for m in published {
        by_key
            .entry(m.key.clone().unwrap_or_default())
            .or_default()
            .push(m.id);
    }
    assert_eq!(by_key, expected, "every key in append order");
    Ok(())
}

// ---------------------------------------------------------------------------

/// Records like [`Recorder`], but the publish of `gate` waits (after the
/// relay's lease check) until `resume` is notified, signalling `paused`.
#[derive(Debug, Default)]
struct Gated {
    rec: Recorder,
    gate: Mutex<Option<Uuid>>,
    paused: tokio::sync::Notify,
    resume: tokio::sync::Notify,
}

impl Publisher for Gated {
    async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
        let gated = self
            .gate
            .lock()
            .map(|g| *g == Some(msg.id))
            .unwrap_or(false);
        if gated {
            self.paused.notify_one();
            self.resume.notified().await;
        }
        self.rec.publish(msg).await
    }
}

/// A relay round frozen mid-key past its lease while another relay takes
/// the key over: the stale round finishes the publish it had started
/// (a duplicate), publishes nothing more, marks nothing sent and reports
/// the rows as lost.
async fn stale_round_is_fenced(db: Db) -> TestResult {
    let (a1, a2, a3) = (
        msg(Some("A"), "a1"),
        msg(Some("A"), "a2"),
        msg(Some("A"), "a3"),
    );
    db.append(&[a1.clone(), a2.clone(), a3.clone()], true)
        .await?;
    let gated = Arc::new(Gated::default());
    if let Ok(mut g) = gated.gate.lock() {
        *g = Some(a2.id);
    }
    let stale = db.relay_named("stale", gated.clone());
    let t = SystemTime::now();
    let round = tokio::spawn(async move { stale.run_once_at(t).await });
    gated.paused.notified().await;

    let rec = Arc::new(Recorder::default());
    let fresh = db.relay_named("fresh", rec.clone());
    let taken = fresh.run_once_at(t + HOUR).await?;
    assert_eq!(
        (taken.claimed, taken.published, taken.lost),
        (3, 3, 0),
        "{taken:?}"
    );
    assert_eq!(rec.published_ids(), vec![a1.id, a2.id, a3.id]);

    gated.resume.notify_one();
    let report = round.await??;
    assert_eq!(
        (report.claimed, report.published, report.lost),
        (3, 0, 3),
        "{report:?}"
    );
    assert_eq!(
        gated.rec.published_ids(),
        vec![a1.id, a2.id],
        "the stale round published a3 after its rows were taken over"
    );
    let sent_by: Vec<Option<String>> = match &db {
        Db::Sqlite(pool, _) => {
            sqlx::query_scalar("SELECT claimed_by FROM msp_outbox ORDER BY seq")
                .fetch_all(pool)
                .await?
        }
        #[cfg(feature = "postgres")]
        Db::Pg(pool) => {
            sqlx::query_scalar("SELECT claimed_by FROM msp_outbox ORDER BY seq")
                .fetch_all(pool)
                .await?
        }
    };
    assert_eq!(
        sent_by,
        vec![Some("fresh".to_owned()); 3],
        "who marked the rows sent"
    );
    assert_eq!(fresh.lag().await?.pending, 0);
    Ok(())
}

#[tokio::test]
async fn stale_round_is_fenced_sqlite() -> TestResult {
    stale_round_is_fenced(sqlite_db().await?).await
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn stale_round_is_fenced_postgres() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    stale_round_is_fenced(pg_db(&url).await?).await
}
