//! A private `redis-server` per test, on a free loopback port, that the test
//! may kill, freeze (SIGSTOP), thaw (SIGCONT) and restart — never the shared
//! Redis other tests use. Modelled on `msp_core::testing::PrivateEtcd`.

use msp_core::testing::backends_required;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`PrivateRedis`] waits for a started server to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The redis-server binary: `MSP_REDIS_SERVER_BIN`, else `redis-server` on
/// the `PATH`, else `/usr/bin/redis-server`, the first whose `--version` runs.
///
/// Otherwise: panics when `backends_required()`, else prints `skipping: …`
/// and returns `None`.
pub(crate) fn redis_server_binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("MSP_REDIS_SERVER_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("redis-server"),
            PathBuf::from("/usr/bin/redis-server"),
        ]);
    for bin in candidates {
        if let Ok(out) = Command::new(&bin).arg("--version").output()
            && out.status.success()
        {
            return Some(bin);
        }
    }
    let msg = "no runnable redis-server (apt install redis-server, or set MSP_REDIS_SERVER_BIN)";
    if backends_required() {
        panic!("MSP_REQUIRE_BACKENDS=1 and {msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

/// A private, non-persistent redis-server (`--save "" --appendonly no`).
///
/// It keeps its port across [`kill`](Self::kill) and
/// [`restart`](Self::restart); a restart starts with no data (and no cached
/// scripts). Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct PrivateRedis {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    stopped: bool,
}

impl PrivateRedis {
    /// Starts redis-server on a free port and waits until it answers `PING`.
    ///
    /// `None` (skip) when there is no binary; panics when the server does not
    /// answer within 10 s.
    pub(crate) fn start() -> Option<PrivateRedis> {
        let bin = redis_server_binary()?;
        let mut redis = PrivateRedis {
            bin,
            port: free_port(),
            child: None,
            stopped: false,
        };
        redis.spawn();
        Some(redis)
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGKILLs the server (if running) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    /// Kills the server if it runs, starts it again on the same port with no
    /// data, and waits until it answers.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOPs the server: connections stay open, nothing is answered (a
    /// server slower than any timeout).
    pub(crate) fn freeze(&mut self) {
        self.signal("STOP");
        self.stopped = true;
    }

    /// SIGCONTs a frozen server: it answers what was queued, then runs as
    /// before.
    pub(crate) fn thaw(&mut self) {
        self.signal("CONT");
        self.stopped = false;
    }

    fn signal(&self, name: &str) {
        let Some(child) = self.child.as_ref() else {
            panic!("private redis on port {} is not running", self.port);
        };
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{name}: {e}"));
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            child.id()
        );
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let why = loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                self.child = None;
                break format!("exited with {status}: {stderr}");
            }
            if pong(self.addr()) {
                return;
            }
            if Instant::now() >= deadline {
                break format!("did not answer PING within {READY_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        panic!("private redis-server on port {} {why}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.stopped {
            // A stopped process dies of SIGKILL too; thaw anyway so nothing
            // lingers half-alive if the kill fails.
            let _ = self.child.as_ref().map(|c| {
                Command::new("kill")
                    .arg("-CONT")
                    .arg(c.id().to_string())
                    .status()
            });
        }
        self.kill();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Whether the server at `addr` answers `PING` with `+PONG`.
fn pong(addr: SocketAddr) -> bool {
    let check = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    };
    check().unwrap_or(false)
}
