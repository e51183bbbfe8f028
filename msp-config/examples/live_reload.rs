//! A service whose log level and a feature flag change live when its YAML
//! file is edited; every accepted change prints its audit line.
//!
//! ```sh
//! cargo run -p msp-config --example live_reload            # uses a temp dir
//! cargo run -p msp-config --example live_reload -- --dir ./config --secs 60
//! ```
//!
//! Then edit the printed file: set `log.level: debug` and the debug lines
//! appear; set `flags.shout.enabled: true` and the greeting is shouted for
//! the users in the rollout; write something invalid (`tick_ms: soon`) and
//! the change is rejected while the service keeps its last good config.

use std::path::PathBuf;
use std::time::Duration;

use msp_config::{AuditRecord, ConfigEvent, FeatureFlags, Loader, Watched};
use serde::Deserialize;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, reload};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Log {
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveConfig {
    log: Log,
    greeting: String,
    tick_ms: u64,
    flags: FeatureFlags,
}

const INITIAL: &str = "\
log:
  level: info
greeting: hello
tick_ms: 1000
flags:
  shout:
    enabled: false
    rollout_percent: 50
    overrides:
      user-1: false
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut secs) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--secs" => secs = args.next().and_then(|s| s.parse::<u64>().ok()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let _tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            let t = tempfile::tempdir()?;
            let d = t.path().to_owned();
            _tmp = t;
            d
        }
    };
    let file = dir.join("live.yaml");
    if !file.exists() {
        std::fs::write(&file, INITIAL)?;
    }

    let config = Watched::<LiveConfig>::builder(Loader::new("live").dir(&dir))
        .validate(|c: &LiveConfig| {
            c.log
                .level
                .parse::<EnvFilter>()
                .map(|_| ())
                .map_err(|e| format!("log.level: {e}").into())
        })
        .audit(|r: &AuditRecord| println!("AUDIT {}", r.to_json()))
        .start()
        .await?;

    let (filter, handle) = reload::Layer::new(EnvFilter::new(&config.get().log.level));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .init();

    println!(
        "edit {} (log.level, flags.shout.enabled, greeting, tick_ms)",
        file.display()
    );

    let mut events = config.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ConfigEvent::Updated { value, .. }) => {
                    if let Err(e) = handle.modify(|f| *f = EnvFilter::new(&value.log.level)) {
                        eprintln!("cannot change the log level: {e}");
                    }
                }
                Ok(ConfigEvent::Rejected { error, .. }) => println!("REJECTED {error}"),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    let deadline = secs.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut n = 0u64;
    loop {
        let cfg = config.get();
        let user = format!("user-{}", n % 4);
        let mut greeting = format!("{} {user}", cfg.greeting);
        if cfg.flags.is_enabled("shout", &user) {
            greeting = greeting.to_uppercase() + "!";
        }
        tracing::info!("{greeting}");
        tracing::debug!(tick = n, "debug detail (visible at log.level: debug)");
        n += 1;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(cfg.tick_ms.max(50))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
