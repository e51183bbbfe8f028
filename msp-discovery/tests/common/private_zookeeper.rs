//! A private standalone ZooKeeper per test, on a free loopback port, that
//! the test may kill, restart (same data: sessions and ephemeral znodes
//! survive) or restart empty (every session is lost). Modelled on
//! `msp_core::testing::PrivateEtcd`.
//!
//! It runs Debian's `zookeeper` package (`/usr/share/java/zookeeper.jar`,
//! whose manifest names its dependencies) on the `java` of the `PATH`:
//! `java -cp <classpath> org.apache.zookeeper.server.ZooKeeperServerMain
//! zoo.cfg`; `MSP_ZOOKEEPER_CLASSPATH` and `MSP_JAVA` override both.
//! `scripts/services.sh start` installs the package when it is missing.

use msp_core::testing::backends_required;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long [`PrivateZooKeeper`] waits for a started server to serve.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Debian's server jar (its manifest's Class-Path lists the rest).
const DEBIAN_JAR: &str = "/usr/share/java/zookeeper.jar";
/// A logging backend, so the server's log lands in `zookeeper.log`.
const DEBIAN_SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";

/// The ZooKeeper server's tick. Sessions expire on tick boundaries and
/// may be as short as `minSessionTimeout` below.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// `java` and the server classpath, if both are there.
///
/// Otherwise: panics when `backends_required()`, else prints `skipping: …`
/// and returns `None`.
fn server_command() -> Option<(PathBuf, String)> {
    let java = std::env::var_os("MSP_JAVA").map_or_else(|| PathBuf::from("java"), PathBuf::from);
    let classpath = std::env::var("MSP_ZOOKEEPER_CLASSPATH").unwrap_or_else(|_| {
        if Path::new(DEBIAN_SLF4J_SIMPLE).exists() {
            format!("{DEBIAN_JAR}:{DEBIAN_SLF4J_SIMPLE}")
        } else {
            DEBIAN_JAR.to_owned()
        }
    });
    let java_runs = Command::new(&java)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let jar_there = classpath
        .split(':')
        .next()
        .is_some_and(|jar| Path::new(jar).exists());
    if java_runs && jar_there {
        return Some((java, classpath));
    }
    let msg = format!(
        "no ZooKeeper server to start (java runs: {java_runs}; {classpath} present: {jar_there}); \
         apt install zookeeper, or set MSP_JAVA / MSP_ZOOKEEPER_CLASSPATH"
    );
    if backends_required() {
        panic!("MSP_REQUIRE_BACKENDS=1 and {msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

/// A private standalone ZooKeeper: `tickTime` [`TICK`], sessions of 0.5 s
/// to 60 s, no admin server, data in a fresh temp directory.
///
/// Dropping it kills the process and removes the directory.
#[derive(Debug)]
pub(crate) struct PrivateZooKeeper {
    java: PathBuf,
    classpath: String,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateZooKeeper {
    /// Starts the server and waits until it serves.
    ///
    /// `None` (skip) without java or the jar; panics when the server does
    /// not serve within 60 s (with its log).
    pub(crate) fn start() -> Option<PrivateZooKeeper> {
        let (java, classpath) = server_command()?;
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "msp-private-zookeeper-{}-{nanos}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut zk = PrivateZooKeeper {
            java,
            classpath,
            dir,
            port: free_port(),
            child: None,
        };
        zk.spawn();
        Some(zk)
    }

    /// The connection string, `127.0.0.1:<port>`.
    pub(crate) fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// The client address (to put a proxy in front of it).
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the process (if running) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs and starts it again on the same port
    /// with the same data: sessions (and their ephemeral znodes) are
    /// restored, each with a fresh timeout.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server and starts it again with no data: every session
    /// is unknown to it, so reconnecting clients are told their session
    /// expired.
    pub(crate) fn restart_empty(&mut self) {
        self.kill();
        let data = self.dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        self.spawn();
    }

    fn spawn(&mut self) {
        let config = self.dir.join("zoo.cfg");
        let tick = TICK.as_millis();
        std::fs::write(
            &config,
            format!(
                "tickTime={tick}\n\
                 dataDir={}\n\
                 clientPort={}\n\
                 clientPortAddress=127.0.0.1\n\
                 minSessionTimeout=500\n\
                 maxSessionTimeout=60000\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=srvr\n",
                self.dir.join("data").display(),
                self.port
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zookeeper.log"))
            .unwrap_or_else(|e| panic!("cannot open the log in {}: {e}", self.dir.display()));
        let child = Command::new(&self.java)
            // A small, quick-starting JVM: two tests run at once on 2 cores.
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg("-cp")
            .arg(&self.classpath)
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.java.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let why = loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                break format!("exited with {status}");
            }
            if serving(self.addr()) {
                return;
            }
            if Instant::now() >= deadline {
                break format!("was not serving within {READY_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(self.dir.join("zookeeper.log")).unwrap_or_default();
        panic!("private ZooKeeper on port {} {why}; log:\n{log}", self.port);
    }
}

impl Drop for PrivateZooKeeper {
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

/// Whether the server at `addr` answers the `srvr` four-letter command as
/// a serving standalone server.
fn serving(addr: SocketAddr) -> bool {
    let check = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"srvr")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.contains("Mode: standalone"))
    };
    check().unwrap_or(false)
}
