//! The standalone gateway: `cargo run -p msp-gateway -- --config gateway.yaml`.
//!
//! Without `--config` it runs the embedded default (the example
//! `examples/gateway.yaml`: the seed's three routes in front of
//! `127.0.0.1:3001`–`3003`, which `cargo run -p msp-gateway --example
//! seed_services` provides). With `--config`, the file is watched and
//! reloaded on change. SIGINT/SIGTERM shut down gracefully: stop accepting,
//! finish in-flight requests, exit.

use msp_core::shutdown::Shutdown;
use msp_gateway::Gateway;
use msp_gateway::admin::Admin;
use msp_gateway::config::GatewayConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_CONFIG: &str = include_str!("../../examples/gateway.yaml");

const USAGE: &str = "\
msp-gateway: an API gateway

USAGE:
    msp-gateway [--config FILE] [--check]

OPTIONS:
    -c, --config FILE   the gateway config (YAML); watched and hot-reloaded.
                        Default: the embedded example (seed routes in front
                        of 127.0.0.1:3001-3003).
        --check         validate the config and exit
    -h, --help          this text

Logs: RUST_LOG (default info; the access log is target msp_gateway::access).
";

struct Args {
    config: Option<PathBuf>,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        check: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-c" | "--config") => {
                let path = it.next().ok_or("--config needs a file")?;
                args.config = Some(PathBuf::from(path));
            }
            Some(s) if s.starts_with("--config=") => {
                args.config = Some(PathBuf::from(&s["--config=".len()..]));
            }
            Some("--check") => args.check = true,
            Some("-h" | "--help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n\n{USAGE}")),
        }
    }
    Ok(args)
}

// One thread: the gateway is I/O-bound and its benches pin it to one core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("msp-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let config = match &args.config {
        Some(path) => GatewayConfig::from_file(path)?,
        None => GatewayConfig::from_yaml(DEFAULT_CONFIG, "embedded examples/gateway.yaml")?,
    };
    if args.check {
        println!(
            "config ok: {} routes, {} services",
            config.routes().len(),
            config.services().len()
        );
        return Ok(());
    }
    let listen = config.listen();
    let admin_listen = config.admin().map(|a| a.listen);
    let gateway = Gateway::from_config(config).await?;

    let shutdown = Shutdown::builder()
        .grace_period(Duration::ZERO)
        .drain_timeout(Duration::from_secs(30))
        .build();
    shutdown.listen_for_signals()?;

    let _watch = match &args.config {
        Some(path) => Some(gateway.watch_file(path).await?),
        None => None,
    };
    if let Some(addr) = admin_listen {
        let admin = match Admin::new(gateway.clone()).with_prometheus() {
            Ok(admin) => admin,
            Err(error) => {
                tracing::warn!(%error, "admin /metrics disabled");
                Admin::new(gateway.clone())
            }
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "admin listening");
        let shutdown = shutdown.clone();
        tokio::spawn(async move { admin.serve(listener, &shutdown).await });
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listen, version = gateway.version(), "msp-gateway listening");
    let serving = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { gateway.serve_with_shutdown(listener, &shutdown).await })
    };
    let report = shutdown.run().await;
    serving.await??;
    tracing::info!(abandoned = report.drain.abandoned, "msp-gateway stopped");
    Ok(())
}
