//! The relay: claims committed outbox rows, publishes them, marks them sent.

use super::{Claim, Lag, OutboxError, Publisher, Row};
use crate::db::unix_micros;
use futures_util::StreamExt;
use msp_core::backoff::{Backoff, Jitter};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Db {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Settings of a [`Relay`]. Builder methods take `self` by value.
///
/// # Example
///
/// ```
/// use msp_core::backoff::Backoff;
/// use msp_saga::outbox::RelayConfig;
/// use std::time::Duration;
///
/// let config = RelayConfig::default()
///     .name("orders")
///     .max_attempts(5)
///     .backoff(Backoff::constant(Duration::from_secs(1))?)
///     .lease(Duration::from_secs(60));
/// # let _ = config;
/// # Ok::<(), msp_core::backoff::InvalidBackoff>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RelayConfig {
    name: String,
    batch_size: u32,
    lease: Duration,
    max_attempts: u32,
    backoff: Backoff,
    poll_interval: Duration,
    publish_timeout: Duration,
    concurrency: usize,
}

impl Default for RelayConfig {
    /// Name `outbox`, batches of 100, 30 s lease, 10 attempts, backoff from
    /// 1 s doubling to 5 min with full jitter, polling every 500 ms, 30 s
    /// publish timeout, 16 keys published concurrently.
    fn default() -> Self {
        RelayConfig {
            name: "outbox".to_owned(),
            batch_size: 100,
            lease: Duration::from_secs(30),
            max_attempts: 10,
            backoff: Backoff::builder()
                .initial(Duration::from_secs(1))
                .max_delay(Duration::from_secs(300))
                .jitter(Jitter::Full)
                .build()
                .unwrap_or_default(),
            poll_interval: Duration::from_millis(500),
            publish_timeout: Duration::from_secs(30),
            concurrency: 16,
        }
    }
}

impl RelayConfig {
    /// The `relay` label of the metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Most rows claimed per round (at least 1).
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How long claimed rows stay reserved for this relay. The relay renews
    /// it before each publish, so it must exceed the time one publish takes
    /// (keep the [publish timeout](RelayConfig::publish_timeout) below it);
    /// once it runs out, another relay may claim the rows and publish them
    /// again, and this relay stops handling them (see the module's
    /// "Fenced takeover").
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Failed publish attempts after which a message is dead-lettered (at
    /// least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The delay before retry *n* of a message is the backoff's *n*-th delay
    /// (its `max_delay` once the backoff's own limits run out).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The wait between rounds when there was nothing to publish.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// A publish taking longer fails (retryably).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How many keys are published concurrently within a round (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

/// What one [`Relay::run_once`] round did.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::RelayReport;
///
/// let idle = RelayReport::default();
/// assert_eq!(idle.claimed, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Messages published and marked sent.
    pub published: usize,
    /// Publish failures that will be retried.
    pub failed: usize,
    /// Messages dead-lettered this round.
    pub dead_lettered: usize,
    /// Claimed messages this relay stopped handling because another relay
    /// took them over after this relay's lease ran out (fenced: this relay
    /// did not mark them, and did not publish them after noticing).
    pub lost: usize,
}

/// Wakes a sleeping [`Relay`] at once (for example right after a commit
/// that appended messages), instead of at its next poll.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sqlx::Error> {
/// use msp_saga::outbox::{BroadcastPublisher, Relay};
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let relay = Relay::sqlite(pool, BroadcastPublisher::default());
/// let waker = relay.waker();
/// waker.wake(); // the next sleep of `relay.run(..)` ends at once
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    /// Ends the relay's current (or next) idle wait.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes committed outbox rows through a [`Publisher`].
///
/// Drive it with [`run`](Relay::run) (a loop until shutdown) or one round at
/// a time with [`run_once`](Relay::run_once). See the
/// [module documentation](super) for its guarantees.
///
/// # Example
///
/// ```
/// use msp_saga::outbox::{BroadcastPublisher, Outbox, OutboxMessage, Relay};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// msp_saga::migrate_sqlite(&pool).await?;
/// let bus = BroadcastPublisher::default();
/// let mut rx = bus.subscribe();
///
/// let relay = Relay::sqlite(pool.clone(), bus);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let waker = relay.waker();
/// let task = tokio::spawn(async move {
///     relay.run(async { let _ = stopped.await; }).await
/// });
///
/// let mut tx = pool.begin().await?;
/// Outbox::append(&mut tx, &OutboxMessage::new("greetings", b"hello".to_vec())).await?;
/// tx.commit().await?;
/// waker.wake();
///
/// assert_eq!(rx.recv().await?.payload, b"hello");
/// let _ = stop.send(());
/// task.await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Relay<P> {
    db: Db,
    publisher: P,
    config: RelayConfig,
    wake: Arc<Notify>,
}

/// What publishing one key group did, summed into a [`RelayReport`].
#[derive(Debug, Default)]
struct GroupReport {
    published: usize,
    failed: usize,
    dead: usize,
    lost: usize,
}

impl<P: Publisher> Relay<P> {
    /// A relay over a SQLite outbox (run one per database).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: sqlx::SqlitePool, publisher: P) -> Self {
        Relay::with_db(Db::Sqlite(pool), publisher)
    }

    /// A relay over a PostgreSQL outbox (several may share one database).
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: sqlx::PgPool, publisher: P) -> Self {
        Relay::with_db(Db::Postgres(pool), publisher)
    }

    fn with_db(db: Db, publisher: P) -> Self {
        Relay {
            db,
            publisher,
            config: RelayConfig::default(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Replaces the settings.
    #[must_use]
    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// The publisher.
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// A handle that wakes this relay's idle wait.
    pub fn waker(&self) -> RelayWaker {
        RelayWaker(self.wake.clone())
    }

    /// How far behind the relay is; also updates the lag gauges.
    pub async fn lag(&self) -> Result<Lag, OutboxError> {
        let lag = match &self.db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => super::Outbox::lag(&mut pool.acquire().await?).await?,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => super::Outbox::lag(&mut pool.acquire().await?).await?,
        };
        let name = self.config.name.clone();
        metrics::gauge!("msp_outbox_pending_messages", "relay" => name.clone())
            .set(lag.pending as f64);
        metrics::gauge!("msp_outbox_oldest_pending_seconds", "relay" => name)
            .set(lag.oldest_age.map_or(0.0, |d| d.as_secs_f64()));
        Ok(lag)
    }

    /// Runs rounds until `shutdown` completes: after a full batch at once,
    /// otherwise after the poll interval or a [wake-up](RelayWaker). Database
    /// errors are logged and retried with the relay's backoff; they do not
    /// end the loop.
    pub async fn run<F: Future<Output = ()>>(&self, shutdown: F) {
        tokio::pin!(shutdown);
        let mut db_backoff = self.config.backoff.iter();
        loop {
            let wait = match self.run_once().await {
                Ok(report) => {
                    db_backoff.reset();
                    if let Err(e) = self.lag().await {
                        tracing::warn!(relay = %self.config.name, error = %e, "outbox lag query failed");
                    }
                    if report.claimed >= self.config.batch_size as usize {
                        Duration::ZERO
                    } else {
                        self.config.poll_interval
                    }
                }
                Err(e) => {
                    let wait = db_backoff.next().unwrap_or(self.config.backoff.max_delay());
                    tracing::warn!(relay = %self.config.name, error = %e, retry_in = ?wait, "outbox relay round failed");
                    wait
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One round at the current time: claim, publish, mark.
    pub async fn run_once(&self) -> Result<RelayReport, OutboxError> {
        self.run_once_at(SystemTime::now()).await
    }

    /// One round as if the time were `now` (due times, leases and backoff
    /// delays are computed from it). Lets tests and simulations move time
    /// without waiting; relays sharing a database should use the real clock.
    pub async fn run_once_at(&self, now: SystemTime) -> Result<RelayReport, OutboxError> {
        let now_us = unix_micros(now);
        let lease_until = unix_micros(now + self.config.lease);
        let batch = i64::from(self.config.batch_size);
        let claim = Claim {
            token: Uuid::now_v7(),
            name: &self.config.name,
        };
        let rows = match &self.db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                super::sqlite::claim(pool, now_us, lease_until, batch, &claim).await?
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                super::postgres::claim(pool, now_us, lease_until, batch, &claim).await?
            }
        };
        let claimed = rows.len();
        if claimed == 0 {
            return Ok(RelayReport::default());
        }
        // Rows arrive sorted by seq; group them by key, keeping that order.
        let mut groups: Vec<Vec<Row>> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for row in rows {
            match row.key.clone() {
                Some(key) => match index.get(&key) {
                    Some(&i) => groups[i].push(row),
                    None => {
                        index.insert(key, groups.len());
                        groups.push(vec![row]);
                    }
                },
                None => groups.push(vec![row]),
            }
        }
        let outcomes: Vec<Result<GroupReport, OutboxError>> = futures_util::stream::iter(groups)
            .map(|group| self.publish_group(group, now, claim))
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let mut report = RelayReport {
            claimed,
            ..RelayReport::default()
        };
        let mut first_err = None;
        for outcome in outcomes {
            match outcome {
                Ok(o) => {
                    report.published += o.published;
                    report.failed += o.failed;
                    report.dead_lettered += o.dead;
                    report.lost += o.lost;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let name = self.config.name.clone();
        metrics::counter!("msp_outbox_published_total", "relay" => name.clone())
            .increment(report.published as u64);
        metrics::counter!("msp_outbox_publish_failures_total", "relay" => name.clone())
            .increment((report.failed + report.dead_lettered) as u64);
        metrics::counter!("msp_outbox_dead_lettered_total", "relay" => name.clone())
            .increment(report.dead_lettered as u64);
        if report.lost > 0 {
            metrics::counter!("msp_outbox_lease_lost_total", "relay" => name)
                .increment(report.lost as u64);
            tracing::warn!(relay = %self.config.name, lost = report.lost, "outbox lease lost: another relay took over claimed messages");
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Publishes one key's rows in order, stopping at the first failure or
    /// when another relay took the rows over: each row's lease is renewed
    /// under the round's `token` right before it is published, and every
    /// write is conditioned on the token.
    async fn publish_group(
        &self,
        group: Vec<Row>,
        now: SystemTime,
        claim: Claim<'_>,
    ) -> Result<GroupReport, OutboxError> {
        let token = claim.token;
        let mut outcome = GroupReport::default();
        let mut sent = Vec::new();
        let held: Vec<i64> = group.iter().map(|r| r.seq).collect();
        let mut rest = group.into_iter();
        while let Some(row) = rest.next() {
            let seq = row.seq;
            let attempts = row.attempts;
            if !self.renew(&held, now, token).await? {
                // Taken over: the key's rows are the other relay's now.
                // Publishing them here could put them after messages the
                // new holder published since; marking them could record as
                // sent what the new holder has not published.
                outcome.lost += held.len() - sent.len();
                break;
            }
            let result = match row.clone().into_message() {
                Ok(msg) => {
                    match tokio::time::timeout(
                        self.config.publish_timeout,
                        self.publisher.publish(&msg),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(super::PublishError::retryable(format!(
                            "publish timed out after {:?}",
                            self.config.publish_timeout
                        ))),
                    }
                }
                // A row whose headers no longer decode can never be published.
                Err(e) => Err(super::PublishError::permanent(e)),
            };
            match result {
                Ok(()) => {
                    sent.push(seq);
                    outcome.published += 1;
                }
                Err(err) => {
                    let attempts = attempts.saturating_add(1);
                    let dead = !err.is_retryable() || attempts as u32 >= self.config.max_attempts;
                    let delay = self
                        .config
                        .backoff
                        .iter()
                        .nth(usize::try_from(attempts - 1).unwrap_or(0))
                        .unwrap_or(self.config.backoff.max_delay());
                    let next = unix_micros(now + delay);
                    let dead_at = dead.then(|| unix_micros(now));
                    if dead {
                        outcome.dead += 1;
                        tracing::error!(relay = %self.config.name, id = %row.id, key = ?row.key, attempts, error = %err, "outbox message dead-lettered");
                    } else {
                        outcome.failed += 1;
                        tracing::warn!(relay = %self.config.name, id = %row.id, key = ?row.key, attempts, retry_in = ?delay, error = %err, "outbox publish failed");
                    }
                    let released: Vec<i64> = rest.by_ref().map(|r| r.seq).collect();
                    let failure = Failure {
                        seq,
                        attempts,
                        next,
                        error: &err.to_string(),
                        dead_at,
                    };
                    if !self.finish_failure(&failure, &released, token).await? {
                        // Taken over meanwhile: the failure is not ours to record.
                        if dead {
                            outcome.dead -= 1;
                        } else {
                            outcome.failed -= 1;
                        }
                        outcome.lost += 1 + released.len();
                    }
                    // A dead head no longer blocks its key; the followers
                    // released above are picked up next round.
                    break;
                }
            }
        }
        if !sent.is_empty() {
            let at = unix_micros(SystemTime::now().max(now));
            let marked = match &self.db {
                #[cfg(feature = "sqlite")]
                Db::Sqlite(pool) => super::sqlite::mark_sent(pool, &sent, at, &claim).await?,
                #[cfg(feature = "postgres")]
                Db::Postgres(pool) => super::postgres::mark_sent(pool, &sent, at, &claim).await?,
            };
            // Rows taken over between their publish and this mark stay
            // unsent: their new holder publishes (and marks) them again.
            let unmarked = sent
                .len()
                .saturating_sub(usize::try_from(marked).unwrap_or(0));
            outcome.published -= unmarked;
            outcome.lost += unmarked;
        }
        Ok(outcome)
    }

    /// Extends the lease of a key group's rows (`held`, none failed yet);
    /// `false` unless this round (`token`) still holds every one of them.
    async fn renew(&self, held: &[i64], now: SystemTime, token: Uuid) -> Result<bool, OutboxError> {
        let until = unix_micros(SystemTime::now().max(now) + self.config.lease);
        let renewed = match &self.db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => super::sqlite::renew(pool, held, until, token).await?,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => super::postgres::renew(pool, held, until, token).await?,
        };
        Ok(usize::try_from(renewed).unwrap_or(0) == held.len())
    }

    /// Records `failure` and releases the key's rows after it, if this
    /// round (`token`) still holds them; `false` when it no longer does.
    async fn finish_failure(
        &self,
        f: &Failure<'_>,
        released: &[i64],
        token: Uuid,
    ) -> Result<bool, OutboxError> {
        let recorded = match &self.db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                let ok = super::sqlite::record_failure(
                    pool, f.seq, f.attempts, f.next, f.error, f.dead_at, token,
                )
                .await?;
                if !released.is_empty() {
                    super::sqlite::release(pool, released, token).await?;
                }
                ok
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let ok = super::postgres::record_failure(
                    pool, f.seq, f.attempts, f.next, f.error, f.dead_at, token,
                )
                .await?;
                if !released.is_empty() {
                    super::postgres::release(pool, released, token).await?;
                }
                ok
            }
        };
        Ok(recorded)
    }
}

/// A failed publish to record: the row, its attempt count, when to retry
/// and whether it is now dead.
struct Failure<'a> {
    seq: i64,
    attempts: i32,
    next: i64,
    error: &'a str,
    dead_at: Option<i64>,
}
