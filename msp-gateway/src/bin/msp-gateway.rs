//! The standalone gateway: `cargo run -p msp-gateway -- --config gateway.yaml`.
//!
//! Without `--config` it runs the embedded default (the example
//! `examples/gateway.yaml`: the seed's three routes in front of
//! `127.0.0.1:3001`–`3003`, which `cargo run -p msp-gateway --example
//! seed_services` provides). With `--config`, the file is watched and
//! reloaded on change. `--threads N` sets the runtime's worker threads
//! (default: one per CPU; `1` runs a current-thread runtime, as the
//! benchmarks do when they pin the gateway to one core). SIGINT/SIGTERM shut down gracefully: stop accepting,
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
    msp-gateway [--config FILE] [--threads N] [--check]

OPTIONS:
    -c, --config FILE   the gateway config (YAML); watched and hot-reloaded.
                        Default: the embedded example (seed routes in front
                        of 127.0.0.1:3001-3003).
    -t, --threads N     worker threads (default: one per CPU); 1 runs
                        everything on one thread (a current-thread runtime)
        --check         validate the config and exit
    -h, --help          this text

Logs: RUST_LOG (default info; the access log is target msp_gateway::access).
";

struct Args {
    config: Option<PathBuf>,
    threads: Option<usize>,
    check: bool,
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--threads needs a number of at least 1, got {s:?}")),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        threads: None,
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
            Some("-t" | "--threads") => {
                let n = it.next().ok_or("--threads needs a number")?;
                args.threads = Some(parse_threads(&n.to_string_lossy())?);
            }
            Some(s) if s.starts_with("--threads=") => {
                args.threads = Some(parse_threads(&s["--threads=".len()..])?);
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("msp-gateway: {error}");
            return ExitCode::FAILURE;
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // One thread: a current-thread runtime (no work stealing, no cross-thread
    // wakeups) — what a gateway pinned to one core wants.
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("msp-gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, threads)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("msp-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, threads: usize) -> Result<(), Box<dyn std::error::Error>> {
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
    // The bound address (the port the OS picked for `listen: …:0`).
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, version = gateway.version(), threads, "msp-gateway listening");
    let serving = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { gateway.serve_with_shutdown(listener, &shutdown).await })
    };
    let report = shutdown.run().await;
    serving.await??;
    tracing::info!(abandoned = report.drain.abandoned, "msp-gateway stopped");
    Ok(())
}
