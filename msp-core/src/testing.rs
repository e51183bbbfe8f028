//! Helpers for tests that talk to real backends (feature `testing`).
//!
//! **Internal**: this module exists for msp's own test suites. It is not
//! part of msp-core's public API, is hidden from its documentation, and may
//! change in any release; enable the `testing` feature only as a
//! dev-dependency.
//!
//! msp's rule: where a feature talks to etcd, PostgreSQL, Redis or NATS, its
//! tests talk to the real server on loopback. Plain `cargo test` on a laptop
//! without those servers skips such a test and says so; the full-suite
//! command and CI set `MSP_REQUIRE_BACKENDS=1`, under which a missing server
//! fails the test instead.
//!
//! | backend | variable | default |
//! |---|---|---|
//! | etcd | `MSP_ETCD_ENDPOINT` | `http://127.0.0.1:23790` |
//! | PostgreSQL | `MSP_POSTGRES_URL` | `postgres://postgres:postgres@127.0.0.1:5432/postgres` |
//! | Redis | `MSP_REDIS_URL` | `redis://127.0.0.1:6379` |
//! | NATS | `MSP_NATS_URL` | `nats://127.0.0.1:4222` |
//!
//! # Example
//!
//! ```
//! use msp_core::testing::{backend, Backend};
//!
//! // In a test: returns the URL, or None (and prints why) to skip.
//! # unsafe { std::env::remove_var("MSP_REQUIRE_BACKENDS") };
//! # unsafe { std::env::set_var("MSP_REDIS_URL", "redis://127.0.0.1:1") };
//! let Some(url) = backend(Backend::Redis) else { return };
//! # unreachable!("{url}");
//! ```
//!
//! A test that must stop and restart etcd runs its own with [`PrivateEtcd`]
//! instead of touching the shared one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The backends msp tests can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// etcd v3 (client URL).
    Etcd,
    /// PostgreSQL (connection URL).
    Postgres,
    /// Redis (connection URL).
    Redis,
    /// NATS with JetStream (server URL).
    Nats,
}

impl Backend {
    /// The environment variable naming this backend's URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Backend::Etcd => "MSP_ETCD_ENDPOINT",
            Backend::Postgres => "MSP_POSTGRES_URL",
            Backend::Redis => "MSP_REDIS_URL",
            Backend::Nats => "MSP_NATS_URL",
        }
    }

    /// The URL used when the variable is unset.
    pub fn default_url(self) -> &'static str {
        match self {
            Backend::Etcd => "http://127.0.0.1:23790",
            Backend::Postgres => "postgres://postgres:postgres@127.0.0.1:5432/postgres",
            Backend::Redis => "redis://127.0.0.1:6379",
            Backend::Nats => "nats://127.0.0.1:4222",
        }
    }

    /// The configured URL (variable or default), without checking it.
    pub fn url(self) -> String {
        std::env::var(self.env_var()).unwrap_or_else(|_| self.default_url().to_owned())
    }
}

/// Whether `MSP_REQUIRE_BACKENDS` is set to `1` or `true`.
pub fn backends_required() -> bool {
    matches!(
        std::env::var("MSP_REQUIRE_BACKENDS").as_deref(),
        Ok("1") | Ok("true")
    )
}

/// The backend's URL if its server accepts a TCP connection.
///
/// Otherwise: panics with the reason when [`backends_required`], else prints
/// `skipping: …` to stderr and returns `None`.
pub fn backend(which: Backend) -> Option<String> {
    let url = which.url();
    match probe(&url) {
        Ok(()) => Some(url),
        Err(why) => unavailable(format!(
            "{which:?} is not reachable at {url} ({why}); set {} or start it with scripts/services.sh",
            which.env_var()
        )),
    }
}

/// Panics with `msg` when [`backends_required`], else prints `skipping: msg`
/// to stderr and returns `None`.
fn unavailable<T>(msg: String) -> Option<T> {
    if backends_required() {
        panic!("MSP_REQUIRE_BACKENDS=1 and {msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

/// The `host:port` of a URL such as `postgres://user@host:5432/db`.
pub fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host_port.is_empty()).then_some(host_port)
}

fn probe(url: &str) -> Result<(), String> {
    let hp = host_port(url).ok_or_else(|| "no host in URL".to_owned())?;
    let addrs = hp.to_socket_addrs().map_err(|e| e.to_string())?;
    let mut last = "no address".to_owned();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// How long [`PrivateEtcd`] waits for a started etcd to answer.
const ETCD_READY_WITHIN: Duration = Duration::from_secs(30);

/// The etcd binary for [`PrivateEtcd`]: `MSP_ETCD_BIN`, else `etcd` on the
/// `PATH`, if `<binary> --version` runs.
///
/// Otherwise: panics when [`backends_required`], else prints `skipping: …`
/// to stderr and returns `None`.
pub fn etcd_binary() -> Option<PathBuf> {
    let bin = std::env::var_os("MSP_ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from);
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => Some(bin),
        _ => unavailable(format!(
            "the etcd binary {} does not run (apt install etcd-server, or set MSP_ETCD_BIN)",
            bin.display()
        )),
    }
}

/// A private single-member etcd process for tests that stop and restart it.
///
/// It listens on free loopback ports, keeps its data (and its log,
/// `etcd.log`) in a fresh directory under the system temp dir, and keeps
/// both ports and data across [`kill`](Self::kill) and
/// [`restart`](Self::restart). Dropping it kills the process and removes the
/// directory.
///
/// # Example
///
/// ```no_run
/// use msp_core::testing::PrivateEtcd;
///
/// // In a test: None (with a message) to skip when there is no etcd binary.
/// let Some(mut etcd) = PrivateEtcd::start() else { return };
/// let endpoint = etcd.endpoint(); // http://127.0.0.1:<port>, answering
/// etcd.kill(); // clients now see etcd down
/// etcd.restart(); // back on the same ports with the same data
/// # drop(endpoint);
/// ```
#[derive(Debug)]
pub struct PrivateEtcd {
    bin: PathBuf,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl PrivateEtcd {
    /// Starts etcd and waits until it answers its `/health` endpoint.
    ///
    /// Returns `None` (skip) when [`etcd_binary`] finds none. Panics when the
    /// process cannot be started or is not healthy within 30 s (the panic
    /// message carries etcd's log).
    pub fn start() -> Option<PrivateEtcd> {
        let bin = etcd_binary()?;
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "msp-private-etcd-{}-{nanos}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut etcd = PrivateEtcd {
            bin,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        etcd.spawn();
        Some(etcd)
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address (to put a proxy in front of it, say).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// The directory holding the data (`data/`) and the log (`etcd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the process (if running) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs, starts it again on the same ports with
    /// the same data, and waits until it answers (panics as [`start`](Self::start)).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap_or_else(|e| panic!("cannot open the etcd log in {}: {e}", self.dir.display()));
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.bin)
            .args(["--name", "msp-private"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("msp-private={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + ETCD_READY_WITHIN;
        let why = loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                break format!("exited with {status}");
            }
            if healthy(self.addr()) {
                return;
            }
            if Instant::now() >= deadline {
                break format!("was not healthy within {ETCD_READY_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        panic!("private etcd at {} {why}; log:\n{log}", self.endpoint());
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Whether etcd at `addr` answers `GET /health` with `"health":"true"`
/// (it has a leader and serves reads).
fn healthy(addr: SocketAddr) -> bool {
    let check = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.1 200") && response.contains("\"health\":\"true\""))
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(host_port("postgres://u@h:5432/db"), Some("h:5432"));
        assert_eq!(host_port("redis://127.0.0.1:6379"), Some("127.0.0.1:6379"));
        assert_eq!(host_port("http://127.0.0.1:2379"), Some("127.0.0.1:2379"));
        assert_eq!(host_port("h:1?x=y"), Some("h:1"));
    }
}
