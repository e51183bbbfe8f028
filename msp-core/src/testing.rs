//! Helpers for tests that talk to real backends (feature `testing`).
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

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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
        Err(why) => {
            let msg = format!(
                "{which:?} is not reachable at {url} ({why}); set {} or start it with scripts/services.sh",
                which.env_var()
            );
            if backends_required() {
                panic!("MSP_REQUIRE_BACKENDS=1 and {msg}");
            }
            eprintln!("skipping: {msg}");
            None
        }
    }
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
