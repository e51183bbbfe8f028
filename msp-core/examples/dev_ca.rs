//! A development CA for msp's mTLS: creates a trust domain's CA and issues
//! an X509-SVID for each named service into a directory, reusing the files
//! already there while they are valid.
//!
//! ```text
//! cargo run -p msp-core --features tls --example dev_ca -- \
//!     --trust-domain shop --out certs order-service payment-service
//! ```
//!
//! Writes `certs/ca.pem` (the trust bundle), `certs/ca-key.pem`, and
//! `certs/{service}.pem` + `certs/{service}-key.pem` for each service
//! (`msp_core::tls::IdentityFiles::in_dir("certs", "order-service")`).

use msp_core::identity::TrustDomain;
use msp_core::tls::dev::{self, Issued};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: dev_ca [--trust-domain <name>] [--out <dir>] <service>...\n\
  --trust-domain  the SPIFFE trust domain (default: shop)\n\
  --out           the directory to write into (default: certs)";

struct Args {
    trust_domain: TrustDomain,
    out: PathBuf,
    services: Vec<String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut trust_domain = "shop".to_owned();
    let mut out = PathBuf::from("certs");
    let mut services = Vec::new();
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--trust-domain" => {
                trust_domain = argv.next().ok_or("--trust-domain needs a value")?;
            }
            "--out" => out = argv.next().ok_or("--out needs a value")?.into(),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ => services.push(arg),
        }
    }
    if services.is_empty() {
        return Err("name at least one service".to_owned());
    }
    let trust_domain = TrustDomain::new(&trust_domain).map_err(|e| e.to_string())?;
    Ok(Args {
        trust_domain,
        out,
        services,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("dev_ca: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let services: Vec<&str> = args.services.iter().map(String::as_str).collect();
    match dev::ensure_dir(&args.out, &args.trust_domain, &services) {
        Ok(report) => {
            println!("trust bundle: {}", args.out.join("ca.pem").display());
            for (service, issued) in report {
                let what = match issued {
                    Issued::Reused => "kept",
                    _ => "issued",
                };
                println!(
                    "{what} spiffe://{}/{service}: {}",
                    args.trust_domain,
                    args.out.join(format!("{service}.pem")).display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dev_ca: {e}");
            ExitCode::FAILURE
        }
    }
}
