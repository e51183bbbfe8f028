//! A keep-alive HTTP/1.1 load client over msp's [`MtlsConnector`] (or plain
//! TCP), for benchmarking mTLS servers side by side
//! (`benches/mtls/run.sh`): wrk cannot present a client certificate, this
//! can, so the same client measures every server.
//!
//! Opens `--conns` connections, each sending `GET /` one request after the
//! other for a warm-up and then `--duration` seconds, and prints requests
//! per second and the p50/p99/p99.9 latency of the measured requests. A
//! connection the server closes is reopened and counted (`reconnects`);
//! failed requests are counted (`errors`). With `--new-conn` every request
//! goes on a new connection instead (TCP connect, the mTLS handshake, one
//! `GET`, close), so the rate is one of handshakes and the latency includes
//! the handshake.
//!
//! ```text
//! cargo run --release -p msp-core --features tls --example mtls_load -- \
//!     --target 127.0.0.1:8443 --dir certs --service bench-client \
//!     --expect spiffe://bench/bench-server --conns 8 --duration 10
//! ```
//!
//! The last line is machine-readable:
//! `RESULT rps=… p50=… p99=… p999=… requests=… errors=… reconnects=…`
//! (latencies in microseconds).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use msp_core::tls::{ExpectedIdentity, IdentityFiles, MtlsConnector, WorkloadIdentity};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tower::Service;

const USAGE: &str = "usage: mtls_load --target <host:port> [options]\n\
  --dir       where the client identity files are (default: certs)\n\
  --service   the client's service name (default: bench-client)\n\
  --expect    the server's SPIFFE ID or trust domain (default: spiffe://<client's trust domain>/bench-server)\n\
  --conns     concurrent keep-alive connections (default: 1)\n\
  --duration  measured seconds (default: 10)\n\
  --warmup    seconds before measuring (default: 1)\n\
  --new-conn  a new connection for every request (handshake cost)\n\
  --plain     plain HTTP instead of mTLS";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    target: String,
    dir: PathBuf,
    service: String,
    expect: Option<ExpectedIdentity>,
    conns: usize,
    duration: Duration,
    warmup: Duration,
    plain: bool,
    new_conn: bool,
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or(format!("{flag} {value}: expected seconds"))
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut target = None;
    let mut args = Args {
        target: String::new(),
        dir: PathBuf::from("certs"),
        service: "bench-client".to_owned(),
        expect: None,
        conns: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        plain: false,
        new_conn: false,
    };
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--target" => target = Some(value("--target")?),
            "--dir" => args.dir = value("--dir")?.into(),
            "--service" => args.service = value("--service")?,
            "--expect" => {
                let id = value("--expect")?;
                args.expect = Some(id.parse().map_err(|e| format!("--expect {id}: {e}"))?);
            }
            "--conns" => {
                let n = value("--conns")?;
                args.conns = match n.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--conns {n}: expected a positive integer")),
                };
            }
            "--duration" => args.duration = seconds("--duration", &value("--duration")?)?,
            "--warmup" => args.warmup = seconds("--warmup", &value("--warmup")?)?,
            "--plain" => args.plain = true,
            "--new-conn" => args.new_conn = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    args.target = target.ok_or("--target is required")?;
    Ok(args)
}

/// How each connection is opened.
#[derive(Clone)]
enum Connect {
    Plain(String),
    Mtls(Box<MtlsConnector>, http::Uri),
}

impl Connect {
    async fn open(&self) -> Result<SendRequest<Empty<Bytes>>, Error> {
        let send = match self {
            Self::Plain(target) => {
                let tcp = tokio::net::TcpStream::connect(target.as_str()).await?;
                tcp.set_nodelay(true)?;
                let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                send
            }
            Self::Mtls(connector, uri) => {
                let stream = connector.clone().call(uri.clone()).await?;
                let (send, conn) = http1::handshake(stream).await?;
                tokio::spawn(conn);
                send
            }
        };
        Ok(send)
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    reconnects: u64,
}

impl Tally {
    /// Counts a request that started at `start`: its latency if it
    /// succeeded after the warm-up, an error if it failed.
    fn record(&mut self, result: Result<(), Error>, start: Instant, measure_from: Instant) {
        match result {
            Ok(()) if start >= measure_from => {
                let us = start.elapsed().as_micros();
                self.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(()) => {}
            Err(_) => self.errors += 1,
        }
    }
}

async fn get(send: &mut SendRequest<Empty<Bytes>>) -> Result<(), Error> {
    send.ready().await?;
    let req = http::Request::get("/")
        .header(http::header::HOST, "bench")
        .body(Empty::new())?;
    let res = send.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if !status.is_success() || body.is_empty() {
        return Err(format!("status {status}, {} body bytes", body.len()).into());
    }
    Ok(())
}

/// One connection's loop: requests back to back until `end`, recording
/// those that start after `measure_from`.
async fn run(connect: Connect, measure_from: Instant, end: Instant) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    let mut send = connect.open().await?;
    loop {
        let start = Instant::now();
        if start >= end {
            return Ok(tally);
        }
        tally.record(get(&mut send).await, start, measure_from);
        if send.is_closed() {
            tally.reconnects += 1;
            send = connect.open().await?;
        }
    }
}

/// A new connection for each request until `end`, recording those that
/// start after `measure_from` (connect, handshake and request).
async fn run_new_conn(
    connect: Connect,
    measure_from: Instant,
    end: Instant,
) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    loop {
        let start = Instant::now();
        if start >= end {
            return Ok(tally);
        }
        let attempt = async {
            let mut send = connect.open().await?;
            get(&mut send).await
        };
        tally.record(attempt.await, start, measure_from);
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn load(args: Args) -> Result<(), Error> {
    let connect = if args.plain {
        Connect::Plain(args.target.clone())
    } else {
        let identity =
            WorkloadIdentity::from_files(IdentityFiles::in_dir(&args.dir, &args.service))?;
        let expect = match args.expect {
            Some(expect) => expect,
            None => format!(
                "spiffe://{}/bench-server",
                identity.spiffe_id().trust_domain()
            )
            .parse()?,
        };
        let connector = MtlsConnector::new(&identity, expect)?;
        let uri = format!("http://{}/", args.target).parse()?;
        Connect::Mtls(Box::new(connector), uri)
    };
    let measure_from = Instant::now() + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.conns {
        if args.new_conn {
            tasks.spawn(run_new_conn(connect.clone(), measure_from, end));
        } else {
            tasks.spawn(run(connect.clone(), measure_from, end));
        }
    }
    let mut all = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let tally = done??;
        all.latencies_us.extend(tally.latencies_us);
        all.errors += tally.errors;
        all.reconnects += tally.reconnects;
    }
    all.latencies_us.sort_unstable();
    let requests = all.latencies_us.len();
    let rps = requests as f64 / args.duration.as_secs_f64();
    let (p50, p99, p999) = (
        percentile(&all.latencies_us, 50.0),
        percentile(&all.latencies_us, 99.0),
        percentile(&all.latencies_us, 99.9),
    );
    println!(
        "{}{} {} conns {:.1} s: {rps:.0} req/s, p50 {p50} us, p99 {p99} us, p99.9 {p999} us",
        if args.plain { "plain" } else { "mtls" },
        if args.new_conn { " new-conn" } else { "" },
        args.conns,
        args.duration.as_secs_f64(),
    );
    println!(
        "RESULT rps={rps:.0} p50={p50} p99={p99} p999={p999} requests={requests} errors={} reconnects={}",
        all.errors, all.reconnects
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("mtls_load: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // One thread: the client is pinned to one core beside the server's.
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(load(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtls_load: {e}");
            ExitCode::FAILURE
        }
    }
}
