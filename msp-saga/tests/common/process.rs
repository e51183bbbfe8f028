//! Worker processes for the fault tests: the test binary re-run as a child
//! (`current_exe()`), signalled with `kill`, and killed when dropped.

use std::process::{Child, Command};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A child process, SIGKILLed when dropped (also when the test panics);
/// a thread reading its output, if any, is joined after the kill, so what
/// the child printed is all read when the drop returns.
pub struct Proc {
    pub child: Child,
    pub reader: Option<JoinHandle<()>>,
}

impl Proc {
    pub fn new(child: Child) -> Self {
        Proc {
            child,
            reader: None,
        }
    }

    /// Sends `sig` (`-STOP`, `-CONT`, ...) with `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {} failed", self.child.id());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Polls `cond` every 10 ms until it holds, failing with `what` after
/// `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A pool on `schema` of the PostgreSQL at `url`, named `app` in
/// `pg_stat_activity`.
#[cfg(feature = "postgres")]
pub async fn schema_pool(url: &str, schema: &str, app: &str, max: u32) -> sqlx::PgPool {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(url)
        .expect("url")
        .application_name(app)
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await
        .expect("connect")
}

/// A small xorshift RNG: kill points and step jitter need no quality.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        Rng(nanos ^ (u64::from(std::process::id()) << 32) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
