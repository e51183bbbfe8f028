//! How long a new registration takes to reach a watching client.
//!
//! ```text
//! cargo run --release -p msp-discovery --features etcd --example registration_latency -- --etcd http://127.0.0.1:23790
//! cargo run --release -p msp-discovery --example registration_latency            # in memory
//! ```
//!
//! A `DiscoveryClient` resolves service `latency-probe` (so it watches it
//! through a `ServiceView`). Then, `--n` times (default 200), one instance
//! registers and the example measures:
//!
//! - **register**: the `register()` call (etcd: lease grant + put);
//! - **visible**: from the start of `register()` until the client's
//!   endpoint set — what the balancer picks from — contains the instance
//!   (registry write + watch event + view + endpoint-set rebuild);
//! - **lag**: visible minus register, how long after `register()` returned
//!   the client still had to wait;
//! - **removed**: from the start of `deregister()` (etcd: lease revoke)
//!   until the instance has left the client's endpoint set.
//!
//! Each registration is removed before the next, so every sample starts
//! from the same state. It prints median, p90, p99 and max per figure; the
//! issue's target is "visible" under 100 ms through etcd on loopback.
//! `--n` and `--etcd URL` are the only options.

use bytes::Bytes;
use http_body_util::Empty;
use msp_core::{BoxError, Instance, InstanceId, ServiceName};
use msp_discovery::{DiscoveryClient, EndpointSet, MemoryRegistry, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const SERVICE: &str = "latency-probe";
/// Bounds every wait, so a broken registry fails the run instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

struct Args {
    etcd: Option<String>,
    n: usize,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args { etcd: None, n: 200 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--etcd" => args.etcd = Some(it.next().ok_or("--etcd needs a URL")?),
            "--n" => {
                let n: usize = it.next().ok_or("--n needs a number")?.parse()?;
                if n == 0 {
                    return Err("--n must be at least 1".into());
                }
                args.n = n;
            }
            other => {
                return Err(format!("unknown argument {other:?} (use --etcd URL, --n N)").into());
            }
        }
    }
    Ok(args)
}

#[cfg(feature = "etcd")]
async fn etcd_registry(url: &str) -> Result<Arc<dyn Registry>, BoxError> {
    let prefix = format!("/msp-example/registration-latency-{}", std::process::id());
    println!("registry: etcd at {url}, prefix {prefix}");
    Ok(Arc::new(
        msp_discovery::EtcdRegistry::connect([url])
            .await?
            .with_prefix(prefix)?,
    ))
}

#[cfg(not(feature = "etcd"))]
async fn etcd_registry(_url: &str) -> Result<Arc<dyn Registry>, BoxError> {
    Err("this build has no etcd support: run with `--features etcd`".into())
}

async fn wait_until(
    set: &EndpointSet,
    id: &InstanceId,
    present: bool,
    what: &str,
) -> Result<(), BoxError> {
    tokio::time::timeout(WAIT, set.wait_for(|s| s.get(id).is_some() == present))
        .await
        .map(drop)
        .map_err(|_| format!("{what} not seen by the client within {WAIT:?}").into())
}

/// Sorted samples in milliseconds.
struct Samples(Vec<f64>);

impl Samples {
    fn quantile(&self, q: f64) -> f64 {
        // Nearest rank: the smallest sample with at least q of them at or
        // below it.
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<9} median {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            self.quantile(0.5),
            self.quantile(0.9),
            self.quantile(0.99),
            self.0.last().copied().unwrap_or_default(),
        )
    }
}

fn samples(mut v: Vec<Duration>) -> Samples {
    v.sort();
    Samples(v.into_iter().map(|d| d.as_secs_f64() * 1e3).collect())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let registry: Arc<dyn Registry> = match &args.etcd {
        Some(url) => etcd_registry(url).await?,
        None => {
            println!("registry: in memory (pass --etcd URL to use etcd)");
            Arc::new(MemoryRegistry::new())
        }
    };
    if cfg!(debug_assertions) {
        println!("note: debug build; measure with --release");
    }
    let service = ServiceName::new(SERVICE)?;
    let client = DiscoveryClient::builder(registry.clone()).build::<Empty<Bytes>>();
    let set = client.resolve(&service).await?;

    let (mut register, mut visible, mut lag, mut removed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.n {
        let port = 20_000 + u16::try_from(i % 40_000)?;
        let instance = Instance::builder(service.clone(), ([127, 0, 0, 1], port).into())
            .id(InstanceId::new(format!("probe-{i}"))?)
            .build()?;
        let id = instance.id().clone();

        let start = Instant::now();
        let registration = registry.register(instance, Duration::from_secs(10)).await?;
        let registered = start.elapsed();
        wait_until(&set, &id, true, "a new registration").await?;
        let seen = start.elapsed();
        register.push(registered);
        visible.push(seen);
        lag.push(seen - registered);

        let start = Instant::now();
        registration.deregister().await?;
        wait_until(&set, &id, false, "a deregistration").await?;
        removed.push(start.elapsed());
    }

    let visible = samples(visible);
    println!("{} registrations of {SERVICE}:", args.n);
    println!("{}", samples(register).line("register"));
    println!("{}", visible.line("visible"));
    println!("{}", samples(lag).line("lag"));
    println!("{}", samples(removed).line("removed"));
    let p99 = visible.quantile(0.99);
    if p99 < 100.0 {
        println!("target met: p99 of visible {p99:.2} ms < 100 ms");
    } else {
        println!("target missed: p99 of visible {p99:.2} ms >= 100 ms");
    }
    Ok(())
}
