//! A minimal axum service behind msp's strict [`MtlsListener`], for
//! benchmarking beside other TLS servers (`benches/mtls/run.sh`): `GET /`
//! answers a small body; the client must present an X509-SVID of the
//! server's trust domain, and the handler's request carries its verified
//! `PeerIdentity` ([`with_peer_identity`]).
//!
//! ```text
//! cargo run -p msp-core --features tls --example dev_ca -- --out certs bench-server bench-client
//! cargo run --release -p msp-core --features tls --example mtls_server -- \
//!     --dir certs --service bench-server --listen 127.0.0.1:8443 --threads 1
//! ```
//!
//! Reads `certs/bench-server.pem`, `certs/bench-server-key.pem` and the
//! trust bundle `certs/ca.pem`, as the `dev_ca` example writes them.
//! `--plain` serves the same app over plain TCP (the baseline; no
//! certificates needed). `--threads 1` runs a current-thread runtime, so
//! the server can be pinned to one core.

use axum::{Router, routing::get};
use msp_core::tls::{IdentityFiles, MtlsListener, WorkloadIdentity, with_peer_identity};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: mtls_server [--dir <dir>] [--service <name>] [--listen <addr>] [--threads <n>] [--plain]\n\
  --dir      where the identity files are (default: certs)\n\
  --service  the service whose certificate to present (default: bench-server)\n\
  --listen   the address to bind (default: 127.0.0.1:8443)\n\
  --threads  runtime worker threads; 1 is a current-thread runtime (default: 1)\n\
  --plain    serve plain HTTP instead of mTLS";

/// The body `GET /` answers.
const BODY: &str = "hello\n";

struct Args {
    dir: PathBuf,
    service: String,
    listen: SocketAddr,
    threads: usize,
    plain: bool,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        dir: PathBuf::from("certs"),
        service: "bench-server".to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
        threads: 1,
        plain: false,
    };
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => args.dir = value("--dir")?.into(),
            "--service" => args.service = value("--service")?,
            "--listen" => {
                let addr = value("--listen")?;
                args.listen = addr.parse().map_err(|e| format!("--listen {addr}: {e}"))?;
            }
            "--threads" => {
                let n = value("--threads")?;
                args.threads = match n.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--threads {n}: expected a positive integer")),
                };
            }
            "--plain" => args.plain = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn app() -> Router {
    Router::new().route("/", get(|| async { BODY }))
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tcp = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = tcp.local_addr()?;
    if args.plain {
        println!("serving plain HTTP on {addr}");
        axum::serve(tcp, app()).await?;
    } else {
        let identity =
            WorkloadIdentity::from_files(IdentityFiles::in_dir(&args.dir, &args.service))?;
        let listener = MtlsListener::new(tcp, &identity)?;
        println!("serving mTLS on {addr} as {}", identity.spiffe_id());
        axum::serve(listener, with_peer_identity(app())).await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("mtls_server: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(runtime) => runtime.block_on(serve(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtls_server: {e}");
            ExitCode::FAILURE
        }
    }
}
