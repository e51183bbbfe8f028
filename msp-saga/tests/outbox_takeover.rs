//! Outbox relays as real processes on one PostgreSQL outbox, killed with
//! SIGKILL and frozen with SIGSTOP mid-batch.
//!
//! The relays are this test binary re-run with `MSP_OUTBOX_WORKER` set and
//! filtered to `outbox_relay_worker` (`current_exe()` works under a plain
//! `cargo test` on a clean clone, where an example or a `[[bin]]` would need
//! extra build steps). Each relay publishes into a PostgreSQL table that
//! plays the broker (an append-only log in arrival order, like a stream):
//! unlike JetStream, whose `Nats-Msg-Id` window would silently drop the
//! relays' duplicates, it keeps every publish, so the test sees exactly
//! what a consumer receives. The consumer is the test: it reads the log in
//! order through the crate's [`Inbox`] (in the same PostgreSQL) and checks
//! that every message arrives once after deduplication, in its key's order.
#![cfg(feature = "postgres")]

mod common;

use common::process::{self, Proc, schema_pool};

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use msp_core::testing::{Backend, backend};
use msp_saga::inbox::{Delivery, Inbox};
use msp_saga::outbox::{Outbox, OutboxMessage, PublishError, Publisher, Relay, RelayConfig};
use sqlx::PgPool;
use uuid::Uuid;

const WORKER: &str = "MSP_OUTBOX_WORKER";
const KEYS: u32 = 6;
const PER_KEY: u32 = 25;
/// Keys published concurrently by one relay round.
const CONCURRENCY: usize = 3;

/// Publishes into the `broker` table, slowly enough (10 ms a message) that
/// a batch is still being published when the test strikes.
struct TablePublisher {
    pool: PgPool,
    relay: String,
}

impl Publisher for TablePublisher {
    async fn publish(&self, msg: &OutboxMessage) -> Result<(), PublishError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let body: serde_json::Value = msg.payload_json().map_err(PublishError::permanent)?;
        let n = body["n"].as_i64().unwrap_or(-1);
        sqlx::query("INSERT INTO broker (relay, msg_id, msg_key, n) VALUES ($1, $2, $3, $4)")
            .bind(&self.relay)
            .bind(msg.id)
            .bind(msg.key.as_deref())
            .bind(n)
            .execute(&self.pool)
            .await
            .map_err(PublishError::retryable)?;
        Ok(())
    }
}

/// The relay process: runs rounds until killed. With `MSP_OUTBOX_EXIT_ON_LOST`
/// it records the first round that lost claimed messages to another relay
/// in `relay_events` and exits 0 (so the test sees that it noticed).
#[test]
fn outbox_relay_worker() {
    let Some(name) = std::env::var_os(WORKER) else {
        return; // only runs as a child process of the tests below
    };
    let name = name.to_string_lossy().into_owned();
    let target = std::env::var("MSP_OUTBOX_TARGET").expect("target");
    let exit_on_lost = std::env::var_os("MSP_OUTBOX_EXIT_ON_LOST").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (url, schema) = target.split_once('#').expect("url#schema");
        let pool = schema_pool(url, schema, &name, 6).await;
        let publisher = TablePublisher {
            pool: pool.clone(),
            relay: name.clone(),
        };
        let relay = Relay::postgres(pool.clone(), publisher).with_config(
            RelayConfig::default()
                .name(name.clone())
                .batch_size(30)
                .concurrency(CONCURRENCY)
                .lease(Duration::from_millis(400))
                .publish_timeout(Duration::from_millis(200)),
        );
        loop {
            match relay.run_once().await {
                Ok(report) if report.lost > 0 => {
                    sqlx::query("INSERT INTO relay_events (relay, lost) VALUES ($1, $2)")
                        .bind(&name)
                        .bind(report.lost as i64)
                        .execute(&pool)
                        .await
                        .expect("record lost");
                    if exit_on_lost {
                        return;
                    }
                }
                Ok(report) if report.claimed > 0 => continue,
                Ok(_) => {}
                Err(e) => eprintln!("relay {name}: round failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

fn spawn_relay(name: &str, target: &str, exit_on_lost: bool) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "outbox_relay_worker",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(WORKER, name)
    .env("MSP_OUTBOX_TARGET", target)
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if exit_on_lost {
        cmd.env("MSP_OUTBOX_EXIT_ON_LOST", "1");
    }
    Proc::new(cmd.spawn().expect("spawn relay"))
}

/// Polls `cond` until it holds, for at most 20 s.
async fn wait_for<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    process::wait_for(what, Duration::from_secs(20), cond).await;
}

async fn count(pool: &PgPool, sql: &'static str, relay: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(relay)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// A migrated schema with the broker, consumer and event tables and
/// `KEYS * PER_KEY` messages appended, `n` counting up within each key.
async fn setup(url: &str) -> (PgPool, String) {
    let (pool, schema) = common::pg_pool(url, 4).await;
    for sql in [
        "CREATE TABLE broker (pos BIGSERIAL PRIMARY KEY, relay TEXT NOT NULL, msg_id UUID NOT NULL, msg_key TEXT, n BIGINT NOT NULL)",
        "CREATE TABLE consumed (pos BIGINT NOT NULL, msg_key TEXT NOT NULL, n BIGINT NOT NULL)",
        "CREATE TABLE relay_events (relay TEXT NOT NULL, lost BIGINT NOT NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect("setup");
    }
    let mut tx = pool.begin().await.expect("begin");
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            let msg = OutboxMessage::json("t", &serde_json::json!({ "n": n }))
                .expect("json")
                .with_key(format!("k{k}"));
            Outbox::append(&mut tx, &msg).await.expect("append");
        }
    }
    tx.commit().await.expect("commit");
    (pool, schema)
}

/// Unsent rows held (claimed, lease running or not) by `relay`.
async fn held_by(pool: &PgPool, relay: &str) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM msp_outbox WHERE claimed_by = $1 AND sent_at IS NULL AND claimed_until IS NOT NULL",
        relay,
    )
    .await
}

/// Messages of relay A's latest claim round that are not in the broker
/// yet (claim tokens are UUIDv7, so the greatest is the latest).
async fn unpublished_in_latest_claim(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM msp_outbox o \
         WHERE o.claim_token = (SELECT max(claim_token::text)::uuid FROM msp_outbox WHERE claimed_by = 'relay-a') \
           AND NOT EXISTS (SELECT 1 FROM broker b WHERE b.msg_id = o.id)",
    )
    .fetch_one(pool)
    .await
    .expect("unpublished")
}

/// SIGSTOPs relay A in the middle of a batch: after it published some
/// messages, while its latest claim still has unpublished ones (retried if
/// A happened to finish the batch when the signal landed). Returns how many
/// of the claim's messages are unpublished.
async fn freeze_mid_batch(pool: &PgPool, a: &Proc) -> i64 {
    for _ in 0..50 {
        wait_for("relay A is mid-batch", || async {
            count(
                pool,
                "SELECT count(*) FROM broker WHERE relay = $1",
                "relay-a",
            )
            .await
                >= 6
                && unpublished_in_latest_claim(pool).await > 0
        })
        .await;
        a.signal("-STOP");
        let left = unpublished_in_latest_claim(pool).await;
        if left > 0 {
            return left;
        }
        a.signal("-CONT");
    }
    panic!("never froze relay A mid-batch");
}

/// Consumes the broker log in arrival order through the inbox; checks that
/// after deduplication every message arrived exactly once, each key in
/// order. Returns the duplicates the inbox dropped.
async fn consume_and_check(pool: &PgPool) -> usize {
    let log: Vec<(i64, Uuid, String, i64)> =
        sqlx::query_as("SELECT pos, msg_id, msg_key, n FROM broker ORDER BY pos")
            .fetch_all(pool)
            .await
            .expect("broker log");
    let mut duplicates = 0;
    for (pos, id, key, n) in &log {
        let (pos, key, n) = (*pos, key.clone(), *n);
        let delivery = Inbox::handle(pool, "consumer", *id, move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO consumed (pos, msg_key, n) VALUES ($1, $2, $3)")
                    .bind(pos)
                    .bind(key)
                    .bind(n)
                    .execute(&mut **tx)
                    .await
            })
        })
        .await
        .expect("inbox");
        if let Delivery::Duplicate = delivery {
            duplicates += 1;
        }
    }
    let consumed: Vec<(String, i64)> =
        sqlx::query_as("SELECT msg_key, n FROM consumed ORDER BY pos")
            .fetch_all(pool)
            .await
            .expect("consumed");
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (key, n) in consumed {
        per_key.entry(key).or_default().push(n);
    }
    assert_eq!(per_key.len(), KEYS as usize, "keys consumed: {per_key:?}");
    let expected: Vec<i64> = (0..i64::from(PER_KEY)).collect();
    for (key, ns) in &per_key {
        assert_eq!(
            ns, &expected,
            "key {key}: after inbox deduplication the consumer saw {ns:?}"
        );
    }
    assert_eq!(log.len(), (KEYS * PER_KEY) as usize + duplicates);
    duplicates
}

/// Waits until every message is sent.
async fn finish(pool: &PgPool) {
    wait_for("every outbox message is sent", || async {
        let unsent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM msp_outbox WHERE sent_at IS NULL")
                .fetch_one(pool)
                .await
                .expect("unsent");
        unsent == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sigkilled_mid_batch_another_takes_over() {
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool, schema) = setup(&url).await;
    let target = format!("{url}#{schema}");
    let a = spawn_relay("relay-a", &target, false);
    // Frozen first, so the kill lands while A holds a batch.
    let orphaned = freeze_mid_batch(&pool, &a).await;
    drop(a); // SIGKILL
    let b = spawn_relay("relay-b", &target, false);
    finish(&pool).await;
    drop(b);
    let by_b = count(
        &pool,
        "SELECT count(*) FROM msp_outbox WHERE claimed_by = $1",
        "relay-b",
    )
    .await;
    assert!(by_b > 0, "relay B sent nothing");
    let duplicates = consume_and_check(&pool).await;
    println!(
        "SIGKILL mid-batch: A left {orphaned} messages of its batch unpublished; B sent {by_b}; \
         {} messages delivered once in key order; {duplicates} duplicates dropped by the inbox",
        KEYS * PER_KEY
    );
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_relay_sigstopped_past_its_lease_is_fenced() {
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool, schema) = setup(&url).await;
    let target = format!("{url}#{schema}");
    let mut a = spawn_relay("relay-a", &target, true);
    let frozen_holding = freeze_mid_batch(&pool, &a).await;
    let b = spawn_relay("relay-b", &target, false);
    // B demonstrably takes over: none of A's claimed rows is left to A,
    // and B has published since.
    wait_for("relay B took over all of A's rows", || async {
        held_by(&pool, "relay-a").await == 0
            && count(
                &pool,
                "SELECT count(*) FROM broker WHERE relay = $1",
                "relay-b",
            )
            .await
                > 0
    })
    .await;
    let sent_by_a: i64 = count(
        &pool,
        "SELECT count(*) FROM msp_outbox WHERE claimed_by = $1 AND sent_at IS NOT NULL",
        "relay-a",
    )
    .await;
    let last_pos: i64 = sqlx::query_scalar("SELECT coalesce(max(pos), 0) FROM broker")
        .fetch_one(&pool)
        .await
        .expect("max pos");
    a.signal("-CONT");
    // A notices that it lost its rows, records it and exits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = a.child.try_wait().expect("relay A status") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    finish(&pool).await;
    drop(b);
    // A marked nothing sent after it resumed.
    let sent_by_a_after = count(
        &pool,
        "SELECT count(*) FROM msp_outbox WHERE claimed_by = $1 AND sent_at IS NOT NULL",
        "relay-a",
    )
    .await;
    assert_eq!(
        sent_by_a_after, sent_by_a,
        "the stale relay A marked messages sent after its rows were taken over"
    );
    // What A published after it resumed: at most the publishes that had
    // passed their lease check when it froze (one per key it was
    // publishing), none of them after a later message of its key.
    let late: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT pos, msg_key, n FROM broker WHERE relay = 'relay-a' AND pos > $1")
            .bind(last_pos)
            .fetch_all(&pool)
            .await
            .expect("late publishes");
    assert!(
        late.len() <= CONCURRENCY,
        "the stale relay A published {} messages after resuming",
        late.len()
    );
    for (pos, key, n) in &late {
        let overtaken: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM broker WHERE msg_key = $1 AND n > $2 AND pos < $3",
        )
        .bind(key)
        .bind(n)
        .bind(pos)
        .fetch_one(&pool)
        .await
        .expect("later messages");
        assert_eq!(
            overtaken, 0,
            "the stale relay A published {key}#{n} after a later message of its key"
        );
    }
    let exited = exited.expect("relay A never noticed that it lost its lease");
    assert!(exited.success(), "relay A failed: {exited}");
    let lost = count(
        &pool,
        "SELECT coalesce(sum(lost), 0)::bigint FROM relay_events WHERE relay = $1",
        "relay-a",
    )
    .await;
    assert!(lost > 0, "relay A reported no lost messages");
    drop(a);
    let duplicates = consume_and_check(&pool).await;
    println!(
        "SIGSTOP past the lease: A froze with {frozen_holding} messages of its batch unpublished, B took them over; \
         after SIGCONT A lost {lost}, published {} stale copies, marked 0; \
         {duplicates} duplicates dropped by the inbox; key order held",
        late.len()
    );
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}
